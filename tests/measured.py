"""Figures the tests measure (adoption times, ...), printed in the session's summary:

MEASURED.append("replicas: kill -9 ...: adopted after 1.2 s")
"""

from __future__ import annotations

MEASURED: list[str] = []
