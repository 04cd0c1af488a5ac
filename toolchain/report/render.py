"""Rendering a report dict as Markdown and as terminal tables."""

from __future__ import annotations


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *[line(r) for r in rows]]


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def accuracy_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    targets = list(report["targets"])
    header = ["T", "ANN"] + [f"SNN {t}" for t in targets] + [f"Δ {t}" for t in targets] + [f"agree {t}" for t in targets]
    ann = report["ann"]["accuracy"]
    rows = []
    for t in report["timesteps"]:
        accs = [report["targets"][n]["accuracy"].get(str(t)) for n in targets]
        deltas = [f"{100 * (a - ann):+.2f}" for a in accs]
        agree = [_pct(report["targets"][n]["agreement_with_ann"].get(str(t))) for n in targets]
        rows.append([str(t), _pct(ann)] + [_pct(a) for a in accs] + deltas + agree)
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


def terminal(report: dict) -> str:
    lines = [f"{report['model']['path']}  neuron={report['neuron']}  data={report['data']['name']} "
             f"({report['data']['test_samples']} test samples)"]
    if report["targets"]:
        lines += ["", *_table(*accuracy_rows(report)), "", *_table(*spike_rows(report))]
        for name, entry in report["targets"].items():
            lines.append(f"{name}: {entry['spikes_per_inference']:.1f} spikes per inference over {entry['simulated_timesteps']} steps")
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


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
                  *_table(*accuracy_rows(report)), "", "## Spikes per layer", "",
                  "Total spikes over all test samples and the firing rate (spikes per neuron per time step).", "",
                  *_table(*spike_rows(report))]
    lines += ["", "## Layers", "", *_table(
        ["layer", "ONNX node", "activation", "λ", "L", "neurons"],
        [[r["name"], r["onnx_node"], r["activation"], _threshold(r["threshold"]), str(r["levels"] or "—"), str(r["neurons"])]
         for r in report["layers"]])]
    return "\n".join(lines) + "\n"


def _threshold(value) -> str:
    if isinstance(value, list):
        return f"per channel, {min(value):.4g}…{max(value):.4g}"
    return f"{value:.4g}"
