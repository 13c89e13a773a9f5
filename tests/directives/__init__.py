"""Tests of app/directives."""
