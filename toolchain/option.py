"""A user-settable option of a neuron model or a target: the CLI's `--name-with-dashes`, the API's keyword `name`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    type: type
    default: Any
    help: str
    choices: tuple = ()
    minimum: int | None = None  # for counts: the smallest value allowed

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")
