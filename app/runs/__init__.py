"""Runs: ordered lists of tasks placed on one host, their states and their containers."""
