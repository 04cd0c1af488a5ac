"""Sections of a generated document that different benchmarks write: each between its own markers, so that
regenerating one (benchmarks/runtime.py rewrites docs/performance.md whole) keeps the others."""

from __future__ import annotations

import re


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section {name} -->", f"<!-- end of section {name} -->"


def section(text: str, name: str) -> str:
    """The section `name` of `text`, markers included; empty when it has none."""
    start, end = _markers(name)
    found = re.search(re.escape(start) + ".*?" + re.escape(end), text, re.DOTALL)
    return found.group(0) if found else ""


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with section `name` holding `body`: in place where it was, else appended."""
    start, end = _markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    old = section(text, name)
    return text.replace(old, block) if old else text.rstrip("\n") + "\n\n" + block + "\n"


def all_sections(text: str) -> list[str]:
    """Every section of `text`, markers included, in order."""
    return [found.group(0) for found in re.finditer(r"<!-- section (\S+) -->.*?<!-- end of section \1 -->", text, re.DOTALL)]
