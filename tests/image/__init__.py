"""make image-test: the container image built from a Debian base and run on the fleet."""
