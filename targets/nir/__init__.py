"""The NIR target: the portable file itself, for the chip toolchains and simulators that read NIR."""

from targets.nir.target import NirTarget

ORDER = 2
TARGET = NirTarget()

__all__ = ["TARGET"]
