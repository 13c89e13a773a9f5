"""`dockfleet doctor HOST`: check a host the way a user would before trusting it.

A room without tables (nothing is stored): schemas.py, checks.py (the checks), routes.py.
"""
