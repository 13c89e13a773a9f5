"""Task definitions: what one container of a run is (image, command, limits, GPUs)."""
