"""The Lava target: snnc's networks as Lava processes, run in Lava's Loihi simulation (Loihi2SimCfg)."""

from targets.lava.network import run_lava
from targets.lava.target import LavaTarget

ORDER = 1
TARGET = LavaTarget()

__all__ = ["TARGET", "run_lava"]
