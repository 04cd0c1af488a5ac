"""Rendering a report dict as Markdown and as terminal tables."""

from __future__ import annotations

from toolchain.report.sections import Section, cost_sections, energy_text


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *[line(r) for r in rows]]


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def accuracy_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """One row per target (the ANN first): accuracy after each T, agreement with the ANN and spikes at the largest T."""
    steps = report["timesteps"]
    last = str(max(steps))
    header = ["", "precision", "samples"] + [f"T={t}" for t in steps] + [f"agree T={last}", f"spikes/inf T={last}", f"latency T={last}"]
    ann = report["ann"]["accuracy"]
    rows = [["ANN (onnxruntime)", "float", str(report["data"]["test_samples"])] + [_pct(ann)] * len(steps) + ["", "", ""]]
    rewritten = report["ann"].get("rewritten")
    if rewritten:  # a rewrite changed the function: its loss apart from the conversion's
        rows.append([f"ANN as rewritten ({rewritten['what']})", "float", str(report["data"]["test_samples"])]
                    + [_pct(rewritten["accuracy"])] * len(steps) + ["", "", ""])
    for name, entry in report["targets"].items():
        rows.append([f"SNN {name}", entry.get("precision", "float"), str(entry["samples"])]
                    + [_pct(entry["accuracy"].get(str(t))) for t in steps]
                    + [_pct(entry["agreement_with_ann"].get(last)), _count(entry["spikes_per_inference"].get(last)),
                       _count(entry.get("latency_steps", {}).get(last))])
    return header, rows


def spike_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    targets = list(report["targets"])
    header = ["layer", "ONNX node", "neurons"] + [f"spikes {t}" for t in targets] + [f"rate {t}" for t in targets]
    rows = []
    for layer in report["layers"]:
        name = layer["name"]
        spikes = [str(report["targets"][t]["spikes_per_layer"].get(name, "—")) for t in targets]
        rates = [f"{report['targets'][t]['firing_rate_per_layer'].get(name, 0):.4f}" for t in targets]
        rows.append([name, layer["onnx_node"], str(layer["neurons"])] + spikes + rates)
    return header, rows


def _count(value) -> str:
    return "—" if value is None else f"{value:.0f}"


def check_lines(report: dict) -> list[str]:
    """Each cross-target check: a verdict line and its per-layer spike table."""
    lines = []
    for check in report.get("checks", []):
        target = check["name"].split()[0]
        verdict = "PASSED" if check["passed"] else "FAILED"
        lines += ["", f"check {check['name']} ({check['mode']}, same {check['samples']} samples): {verdict}; "
                      f"predictions agree {100 * check['predictions_agree']:.2f} %, readout gap {check['readout_max_relative_gap']:.2e}",
                  *table(["layer", "spikes reference", f"spikes {target}", "agree"],
                          [[layer, str(v["reference"]), str(v[target]), "yes" if v["agree"] else "NO"]
                           for layer, v in check["spikes_per_layer"].items()])]
    return lines


def terminal(report: dict) -> str:
    lines = [f"{report['model']['path']}  neuron={report['neuron']}  data={report['data']['name']} "
             f"({report['data']['test_samples']} test samples)"]
    if report["targets"]:
        lines += ["", *table(*accuracy_rows(report)), "", *table(*spike_rows(report)), *check_lines(report)]
    lines += _cost_summary(report)
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def _cost_summary(report: dict) -> list[str]:
    """One line for the energy under each regime's first model and one per chip's fit; the rest is in report.md."""
    lines, last = [], str(max(report["timesteps"]))
    shown = {}
    for model in report.get("energy", {}).values():
        shown.setdefault(model["regime"], model)
    if shown:
        lines.append("")
    for model in shown.values():
        lines.append(f"energy per inference ({model['label']}, {model['regime']}): ANN {energy_text(model['ann_pj'])}, "
                     f"SNN T={last} {energy_text(model['snn_pj'][last])}")
    sanafe = report.get("targets", {}).get("sanafe")
    if sanafe:  # a simulator that reports energy: its figures beside snnc's estimate
        parts = ", ".join(f"{k} {energy_text(sanafe['energy'][k] * 1e12)}" for k in ("synapse", "dendrite", "soma", "network"))
        total, chip = sanafe["energy_vs_snnc"]["total"], sanafe["energy_vs_snnc"]["on chip"]
        lines.append(f"energy per inference (SANA-FE Loihi, {sanafe['samples']} samples): {energy_text(total['sanafe_j'] * 1e12)} "
                     f"({parts}); snnc's Loihi 1 estimate for the same spikes {energy_text(total['snnc_j'] * 1e12)} "
                     f"({100 * total['snnc_relative_error']:+.1f} %), on chip without the input layer {energy_text(chip['snnc_j'] * 1e12)} "
                     f"({100 * chip['snnc_relative_error']:+.1f} %); latency {1e6 * sanafe['latency']['per_inference_s']:.1f} µs per inference")
    for chip in report.get("resources", {}).values():
        lines.append(chip["findings"][0])
    return lines


def markdown(report: dict) -> str:
    model, data = report["model"], report["data"]
    lines = [
        f"# snnc report: {model['path']}", "",
        f"- neuron model: `{report['neuron']}`",
        f"- data: `{data['name']}`, {data['test_samples']} test samples, {data['calibration_samples']} calibration samples",
        f"- time steps: {', '.join(map(str, report['timesteps']))}",
        f"- ANN accuracy (onnxruntime): {_pct(report['ann']['accuracy'])}",
        f"- snnc {report['versions']['snnc']}; onnx {report['versions']['onnx']}, onnxruntime {report['versions']['onnxruntime']}, "
        f"nir {report['versions']['nir']}, torch {report['versions']['torch']}, numpy {report['versions']['numpy']}",
    ]
    if report["notes"]:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report["notes"]]]
    if report["targets"]:
        lines += ["", "## Accuracy per time step", "",
                  "Accuracy after T steps (argmax of the readout's running sum), its difference from the ANN in points, "
                  "and the share of samples where the SNN predicts what the ANN predicts.", "",
                  *table(*accuracy_rows(report)), "", "## Spikes per layer", "",
                  "Total spikes over each target's samples and the firing rate (spikes per neuron per time step).", "",
                  *table(*spike_rows(report))]
    if report.get("checks"):
        lines += ["", "## Cross-target checks", "", "Each check runs the same samples on both sides at the same precision "
                  "(exact: identical spikes, predictions and readout; tolerance: see docs/targets.md).", *check_lines(report)]
    for section in cost_sections(report):
        lines += _markdown_section(section)
    lines += ["", "## Layers", "", *table(*layer_rows(report))]
    return "\n".join(lines) + "\n"


def _markdown_section(section: Section) -> list[str]:
    return ["", f"## {section.title}", "", section.text, "", *table(section.header, section.rows),
            *([""] + [f"- {note}" for note in section.notes] if section.notes else [])]


def layer_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    return (["layer", "ONNX node", "activation", "λ", "L", "neurons"],
            [[r["name"], r["onnx_node"], r["activation"], _threshold(r["threshold"]), str(r["levels"] or "—"), str(r["neurons"])]
             for r in report["layers"]])


def _threshold(value) -> str:
    if isinstance(value, list):
        return f"per channel, {min(value):.4g}…{max(value):.4g}"
    return f"{value:.4g}"
