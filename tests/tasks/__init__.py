"""Tests of app/tasks."""
