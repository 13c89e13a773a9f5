"""Bounds every input respects, so nothing a client sends can overflow a column or a page."""

from __future__ import annotations

# PostgreSQL INTEGER (ids, counts): the smallest integer column of the databases we support.
DB_INT_MAX = 2**31 - 1
# PostgreSQL BIGINT / SQLite INTEGER.
DB_BIGINT_MAX = 2**63 - 1

MAX_NAME = 200
MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 512
MAX_ENV = 256
MAX_ENV_VALUE = 32 * 1024
MAX_COMMAND_ARGS = 512
MAX_COMMAND_ARG = 32 * 1024
MAX_BINDS = 64
MAX_PATH = 4096
MAX_TASKS_PER_RUN = 100
MAX_GPUS = 256
MAX_CONCURRENCY = 100_000
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # what a shell accepts as a variable name
EXCERPT = 80  # characters of a bad value echoed back in a 422
