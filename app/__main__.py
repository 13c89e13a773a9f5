"""`python -m app` is the `dockfleet` command."""

from app.cli import main

main()
