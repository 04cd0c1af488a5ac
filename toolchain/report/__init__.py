"""Reports: `report.json` (the schema below), `report.md` and the terminal tables, from one dict.

report.json holds at least
    {"neuron": str, "timesteps": [int], "ann": {"accuracy": float},
     "targets": {"<target>": {"accuracy": {"<T>": float}, "spikes_per_layer": {"<layer>": int}}}}
with accuracies as fractions in [0, 1]; the rest (layers, firing rates, agreement, versions) is documented
in docs/report.md. Nothing time-dependent goes into report.json, so identical inputs give identical bytes.
"""

from toolchain.report.build import compare_runs, layer_table, target_entry, versions
from toolchain.report.render import markdown, terminal

__all__ = ["compare_runs", "layer_table", "markdown", "target_entry", "terminal", "versions"]
