"""The report's cost sections (operations, energy, chip resources) as titled tables, rendered by report.md and
report.html alike. Each reads only report.json's entries, so `snnc report` can re-render an old report."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    title: str
    text: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)  # bullet points under the table


def energy_text(pj: float) -> str:
    """An energy in the unit that keeps 1-3 digits before the point."""
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ")):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def counted_target(report: dict) -> str | None:
    """The first target with operation counts (the reference runtime's full run)."""
    return next((name for name, entry in report.get("targets", {}).items() if "synops" in entry), None)


def cost_sections(report: dict) -> list[Section]:
    sections = []
    target = counted_target(report)
    if target:
        sections.append(_operations(report, target))
    if report.get("energy"):
        sections += _energy(report, target)
    if report.get("resources"):
        sections += _resources(report)
    return sections


def onnx_node_of(report: dict) -> dict[str, str]:
    """Each spiking layer's ONNX node, from report.json's `layers` (a layer without one reads '—')."""
    return {row["name"]: row.get("onnx_node") or "—" for row in report.get("layers", [])}


def _operations(report: dict, target: str) -> Section:
    entry = report["targets"][target]
    samples, last = max(entry["samples"], 1), max(report["timesteps"])
    onnx_nodes = onnx_node_of(report)
    rows, totals = [], [0] * 6
    for layer in entry["synops"]:
        values = [entry["neurons"][layer], entry["macs"][layer], entry["input_macs_per_step"][layer],
                  entry["synapses"][layer], entry["synops"][layer] / samples, entry["graded_synops"][layer] / samples]
        totals = [a + b for a, b in zip(totals, values)]
        rows.append([layer, onnx_nodes.get(layer, "—"), *_counts(values), _per_synapse(values[4], values[3])])
    rows.append(["all", "", *_counts(totals), _per_synapse(totals[4], totals[3])])
    return Section(
        "Operations per layer",
        f"Per inference on {target} at T={last}. A layer is where synapses end (spiking layers and the readout). "
        "ANN MACs: the ANN's multiply-accumulates into the layer; input MACs: the SNN's layer on the analog input, "
        "computed at every step; synapses: those spikes drive; synops: synaptic events (a neuron emitting n spikes "
        "in a step: n events per synapse); graded: one event per synapse per step with n > 0 (Loihi 2 graded "
        "spikes). See docs/energy.md.",
        ["layer", "ONNX node", "neurons", "ANN MACs", "input MACs/step", "synapses", "synops", "graded synops",
         "spikes/synapse"], rows)


def _counts(values) -> list[str]:
    return [f"{v:,.0f}" for v in values]


def _per_synapse(events: float, synapses: float) -> str:
    return f"{events / synapses:.3g}" if synapses else "—"


def _energy(report: dict, target: str | None) -> list[Section]:
    energy, steps = report["energy"], [str(t) for t in report["timesteps"]]
    last = steps[-1]
    sources = list(dict.fromkeys(model["source"] for model in energy.values()))
    summary = []
    for model in energy.values():
        snn = model["snn_pj"][last]
        summary.append([model["label"], model["regime"], energy_text(model["ann_pj"]), energy_text(snn),
                        f"{snn / model['ann_pj']:.3g}", energy_text(model["snn_pj_input_once"][last]),
                        f"{model['spikes_per_synapse'][last]:.3g}", _break_even(model["break_even_spikes_per_synapse"][last]),
                        f"[{sources.index(model['source']) + 1}]"])
    by_t = [[model["label"], energy_text(model["ann_pj"]), *(energy_text(model["snn_pj"][t]) for t in steps)] for model in energy.values()]
    parts = list(next(iter(energy.values()))["breakdown_pj"][last])
    breakdown = [[model["label"], *(_share(model["breakdown_pj"][last][p], model["snn_pj"][last]) for p in parts)]
                 for model in energy.values()]
    return [
        Section("Energy per inference",
                f"ANN vs SNN ({target}, T={last}) under each cost model in toolchain/chips/. Compute only: MACs and "
                "accumulates at 45 nm, nothing else; chip model: the chip's synaptic-operation, neuron-update and "
                "spike energies (static power and routing not included). The SNN's input layer runs at every step "
                "(\"input once\": computed once instead). Break-even: spikes per synapse per inference at which the "
                "SNN costs what the ANN costs; below it the SNN is cheaper (docs/energy.md).",
                ["cost model", "regime", "ANN", f"SNN T={last}", "SNN/ANN", "SNN input once", "spikes/synapse",
                 "break-even spikes/synapse", "source"], summary,
                [f"[{i + 1}] {source}" for i, source in enumerate(sources)]),
        Section("Energy per inference by time steps", "The SNN's energy after T steps, beside the ANN's.",
                ["cost model", "ANN", *(f"SNN T={t}" for t in steps)], by_t),
        Section(f"Energy breakdown of the SNN at T={last}", "Share of the SNN's energy per component.",
                ["cost model", *parts], breakdown),
    ]


def _break_even(value: float) -> str:
    return f"{value:.3g}" if value > 0 else "none: fixed costs > ANN"


def _share(part: float, total: float) -> str:
    return f"{100 * part / total:.1f} %" if total else "—"


def _resources(report: dict) -> list[Section]:
    """A summary over the chips, then each chip's layers: where they go and what limits them."""
    resources = report["resources"]
    rows = [[chip["name"], "yes" if chip["fits"] else "NO", str(chip["cores"]), str(chip["chips"] or "—"), chip["spikes"]]
            for chip in resources.values()]
    sections = [Section("Chip resources",
                        "Cores each chip needs for this network; the limits and mapping rules, with their sources, are in "
                        "docs/resources.md. Binary-spike chips run group neurons as their binary members.",
                        ["chip", "fits", "cores", "chips", "spikes"], rows)]
    onnx_nodes = onnx_node_of(report)
    for chip in resources.values():
        if chip["mapping"] == "core array":
            header = ["layer", "ONNX node", "compartments", "cores", "what sets the cores"]
            rows = [[row["layer"], onnx_nodes.get(row["layer"], "—"), str(row["neurons"]),
                     str(row["cores"]) if row["fits"] else "does not fit", row["reason"]] for row in chip["layers"]]
            notes = chip["findings"][1 + len(rows):]  # after the summary and one finding per layer
        else:
            header = ["layer", "ONNX node", "convolution", "kernel memory", "neuron memory", "core"]
            rows = [[row["layer"], onnx_nodes.get(row["layer"], "—"), row["convolution"], str(row["kernel_memory"]),
                     str(row["neuron_memory"]), "—" if row["core"] is None else str(row["core"])] for row in chip["layers"]]
            notes = chip["findings"][1:]
        sections.append(Section(chip["name"], chip["findings"][0], header, rows, notes))
    return sections


def core_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Cores per layer on every core-array chip (for the core-usage plot and table)."""
    chips = {key: chip for key, chip in report.get("resources", {}).items() if chip["mapping"] == "core array"}
    layers = list(dict.fromkeys(row["layer"] for chip in chips.values() for row in chip["layers"]))
    cores = {key: {row["layer"]: row["cores"] if row["fits"] else None for row in chip["layers"]} for key, chip in chips.items()}
    header = ["layer", *(chip["name"] for chip in chips.values())]
    return header, [[layer, *(str(cores[key].get(layer) or "does not fit") for key in chips)] for layer in layers]
