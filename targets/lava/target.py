"""Lava as a target: `--lava-samples` samples in Loihi2SimCfg, checked against the reference at the same precision
(spike for spike with fixed_pt)."""

from __future__ import annotations

from targets.interface import Target
from targets.lava.network import TAGS, run_lava
from toolchain.option import Option


class LavaTarget(Target):
    name = "lava"
    spikes = "graded"
    description = "Lava's Loihi simulation on a few samples, checked against the reference"
    options = (Option("lava_samples", int, 20, "samples run through Lava for --target lava (default: 20)", minimum=1),
               Option("lava_tag", str, "fixed_pt", "Lava ProcessModels: fixed_pt (Loihi precision, checked bit for bit) "
                      "or floating_pt (default: fixed_pt)", choices=TAGS))

    def precision(self, settings: dict) -> str:
        return "loihi" if settings.get("lava_tag", "fixed_pt") == "fixed_pt" else "float"

    def samples(self, settings: dict, available: int) -> int:
        return min(settings.get("lava_samples", 20), available)

    def run(self, graph, x, timesteps, settings, threads, batch_size=None, counted_steps=()):
        result = run_lava(graph, x, timesteps, settings.get("lava_tag", "fixed_pt"))
        result.details["tag"] = settings.get("lava_tag", "fixed_pt")
        return result

    def exact(self, settings: dict) -> bool:
        return settings.get("lava_tag", "fixed_pt") == "fixed_pt"
