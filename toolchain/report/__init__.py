"""Reports: `report.json` (the schema below), `report.md`, `report.html` and the terminal tables, from one dict.

report.json holds at least
    {"neuron": str, "timesteps": [int], "ann": {"accuracy": float},
     "targets": {"<target>": {"accuracy": {"<T>": float}, "spikes_per_layer": {"<layer>": int}}}}
with accuracies as fractions in [0, 1]; the rest (layers, firing rates, agreement, versions) is documented
in docs/report.md; each target's operation counts and the top-level "energy" and "resources" in docs/energy.md
and docs/resources.md. Nothing time-dependent goes into report.json, so identical inputs give identical bytes.
"""

from toolchain.report.build import compare_runs, layer_table, operations_entry, target_entry, versions
from toolchain.report.files import rerender, write_reports
from toolchain.report.html import html
from toolchain.report.render import markdown, terminal

__all__ = ["compare_runs", "html", "layer_table", "markdown", "operations_entry", "rerender", "target_entry", "terminal",
           "versions", "write_reports"]
