"""SANA-FE as a target: `--sanafe-samples` samples on SANA-FE's model of Loihi, checked spike for spike against the
reference runtime in SANA-FE's arithmetic, with the simulated energy and latency beside snnc's estimate."""

from __future__ import annotations

from targets.interface import Target
from targets.sanafe.compare import energy_comparison
from toolchain.option import Option


class SanafeTarget(Target):
    name = "sanafe"
    spikes = "binary"
    description = "SANA-FE's Loihi model on a few samples: spikes checked, simulated energy and latency"
    options = (Option("sanafe_samples", int, 5, "samples run through SANA-FE for --target sanafe (default: 5)", minimum=1),)
    simulates_energy = True

    def samples(self, settings: dict, available: int) -> int:
        return min(settings.get("sanafe_samples", 5), available)

    def require(self) -> None:
        from targets.sanafe import require

        require()

    def run(self, graph, x, timesteps, settings, threads, batch_size=None, counted_steps=()):
        from targets.sanafe import run_sanafe

        result, costs = run_sanafe(graph, x, timesteps)
        result.details.update(
            energy={**costs["energy_j"], "per": "inference", "unit": "J"},
            latency={"per_inference_s": costs["latency_s"], "per_step_s": costs["latency_per_step_s"]},
            cores=costs["cores"], synapses=costs["synapses"], wall_s_per_sample=costs["wall_s_per_sample"])
        return result

    def exact(self, settings: dict) -> bool:
        return True

    def reference_graph(self, graph):
        from targets.sanafe import sanafe_graph

        return sanafe_graph(graph)

    def compare_energy(self, entry: dict, estimate: dict, timesteps: int) -> dict:
        spikes = entry["spikes_per_inference"][str(timesteps)]
        energy = {k: v for k, v in entry["energy"].items() if k not in ("per", "unit")}
        return {"energy_vs_snnc": energy_comparison({"energy_j": energy}, estimate["loihi1"], timesteps, spikes)}
