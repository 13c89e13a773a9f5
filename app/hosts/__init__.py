"""Worker hosts: the registry, their health and their eligibility."""
