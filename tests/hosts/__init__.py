"""Tests of app/hosts."""
