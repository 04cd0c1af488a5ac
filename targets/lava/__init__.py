"""The Lava target: snnc's NIR graphs as Lava processes, simulated with Loihi2SimCfg (floating_pt, fixed_pt)."""

from targets.lava.network import run_lava

__all__ = ["run_lava"]
