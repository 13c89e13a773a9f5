"""The README's shell blocks and curl commands, for tests that hold the README to the code."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_blocks(marker: str | None = None) -> list[str]:
    """The ```bash blocks of the README (only the one after `<!-- marker -->` if given)."""
    text = README.read_text()
    if marker is not None:
        text = text.split(f"<!-- {marker} -->", 1)[1]
    blocks = [b.split("```", 1)[0] for b in text.split("```bash\n")[1:]]
    return blocks[:1] if marker is not None else blocks


def python_blocks() -> list[str]:
    """The ```python blocks of the README."""
    text = README.read_text()
    return [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]


def commands(block: str, program: str) -> list[list[str]]:
    """Each `program …` command of a bash block as argv (continuations joined, comments cut)."""
    joined = block.replace("\\\n", " ")
    lines = [line for line in joined.splitlines() if line.startswith(f"{program} ")]
    return [shlex.split(line, comments=True) for line in lines]


def _words(command: str) -> list[str] | None:
    """The shell words of a command, or None while a quote or a `\\` continuation is open."""
    if command.rstrip().endswith("\\"):
        return None
    try:
        return shlex.split(command.split(" | ")[0], comments=True)
    except ValueError:
        return None


def curl_calls(markdown: str) -> list[tuple[str, str, Any]]:
    """(method, path?query, JSON body) of every `curl` command in a markdown text."""
    lines, calls, i = markdown.splitlines(), [], 0
    while i < len(lines):
        command = lines[i].strip()
        i += 1
        if not command.startswith("curl "):
            continue
        while (words := _words(command)) is None:
            command = command.rstrip().removesuffix("\\") + "\n" + lines[i]
            i += 1
        method, body, url = "GET", None, ""
        for j, word in enumerate(words):
            if word == "-X":
                method = words[j + 1]
            elif word in ("-d", "--data"):
                body = json.loads(words[j + 1])
            elif word.startswith("http"):
                url = word
        parts = urlsplit(url)
        calls.append((method, parts.path + (f"?{parts.query}" if parts.query else ""), body))
    return calls
