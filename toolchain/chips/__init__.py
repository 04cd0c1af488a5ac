"""Chip data: per-operation energies and resource limits, one TOML file per chip in this folder.

Every number is a table `{ value = ..., source = "..." }` naming where it comes from (docs/energy.md,
docs/resources.md). A file has `name`, `summary`, optionally `spikes` (binary, graded or events: what a neuron
sends), `mapping` (how snnc places a network on it: `core array` or `layer per core`), `notes`, a list
`cost_models` (each with `name`, `label`, `regime` and energies in pJ) and tables `limits` and `synapse_format`.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


@cache
def load_chips() -> dict[str, dict]:
    """Every chip file, by file name (`loihi1`, `speck`, ...), checked to give each number its source."""
    chips = {}
    for path in sorted(FOLDER.glob("*.toml")):
        chip = tomllib.loads(path.read_text())
        check_sources(chip, path.name)
        chips[path.stem] = chip
    return chips


def value(figure: dict):
    """The number (or list of numbers) of a `{ value, source }` entry."""
    return figure["value"]


def check_sources(entry, where: str) -> None:
    """Every number of a chip file's entry is a `{ value, source }` pair with a non-empty source."""
    if isinstance(entry, dict):
        if "value" in entry:
            if not str(entry.get("source", "")).strip():
                raise ValueError(f"toolchain/chips/{where}: a number without a source")
            return
        for key, item in entry.items():
            check_sources(item, f"{where}: {key}")
    elif isinstance(entry, list):
        for item in entry:
            check_sources(item, where)
    elif isinstance(entry, (int, float)) and not isinstance(entry, bool):
        raise ValueError(f"toolchain/chips/{where} is a bare number; write it as {{ value = ..., source = \"...\" }}")
