"""The only code that talks to Docker (aiodocker) and SSH (asyncssh)."""
