"""Directives: named defaults (task list, env) that runs are launched from."""
