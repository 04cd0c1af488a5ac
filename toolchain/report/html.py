"""report.html: the report as one self-contained page (inline CSS and SVG plots, no scripts, no external files)."""

from __future__ import annotations

import re
from html import escape

from toolchain.report.render import accuracy_rows, check_lines, layer_rows, spike_rows
from toolchain.report.sections import Section, core_rows, cost_sections, energy_text
from toolchain.report.svg import bar_plot, line_plot

NUMBER = re.compile(r"^[-+]?[\d.,]+( ?(%|[pnµm]?J))?$|^—$|^\[\d+\]$")  # cells aligned right
STYLE = """
body { font-family: sans-serif; max-width: 1340px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.number { text-align: right; white-space: nowrap; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } .plots svg { border: 1px solid #eee; }
p.text { max-width: 60em; } li { margin: 0.2em 0; } pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
"""


def html(report: dict) -> str:
    model, data = report["model"], report["data"]
    body = [f"<h1>snnc report: {escape(model['path'])}</h1>", "<ul>",
            f"<li>neuron model: <code>{escape(report['neuron'])}</code></li>",
            f"<li>data: <code>{escape(data['name'])}</code>, {data['test_samples']} test samples, "
            f"{data['calibration_samples']} calibration samples</li>",
            f"<li>time steps: {', '.join(map(str, report['timesteps']))}</li>",
            f"<li>ANN accuracy (onnxruntime): {100 * report['ann']['accuracy']:.2f} %</li>", "</ul>"]
    body += [f"<p class='text'>note: {escape(n)}</p>" for n in report["notes"]]
    plots = _plots(report)
    if plots:
        body += ["<h2>Plots</h2>", "<div class='plots'>", *plots, "</div>"]
    if report["targets"]:
        body += ["<h2>Accuracy per time step</h2>", table(*accuracy_rows(report)),
                 "<h2>Spikes per layer</h2>", table(*spike_rows(report))]
    if report.get("checks"):
        body += ["<h2>Cross-target checks</h2>", f"<pre>{escape(chr(10).join(check_lines(report)).strip())}</pre>"]
    body += [_section(section) for section in cost_sections(report)]
    body += ["<h2>Layers</h2>", table(*layer_rows(report))]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>snnc report: {escape(model['path'])}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    lines = ["".join(f"<td class='number'>{escape(str(c))}</td>" if NUMBER.match(str(c)) else f"<td>{escape(str(c))}</td>"
                     for c in row) for row in rows]
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{line}</tr>" for line in lines) + "</table>"


def _section(section: Section) -> str:
    notes = "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in section.notes) + "</ul>" if section.notes else ""
    return f"<h2>{escape(section.title)}</h2><p class='text'>{escape(section.text)}</p>{table(section.header, section.rows)}{notes}"


def _plots(report: dict) -> list[str]:
    """Accuracy vs T, firing rate per layer, energy per cost model, the SNN's energy breakdown, cores per layer."""
    plots, steps, targets = [], report["timesteps"], report["targets"]
    with_accuracy = {name: entry for name, entry in targets.items() if all(str(t) in entry["accuracy"] for t in steps)}
    if with_accuracy and len(steps) > 1:
        series = {f"SNN {name}": (steps, [entry["accuracy"][str(t)] for t in steps]) for name, entry in with_accuracy.items()}
        plots.append(line_plot(series, "accuracy vs time steps", "time steps T", "accuracy", reference=("ANN", report["ann"]["accuracy"])))
    if targets:
        layers = [layer["name"] for layer in report["layers"]]
        rates = {name: [entry["firing_rate_per_layer"].get(layer, 0.0) for layer in layers] for name, entry in targets.items()}
        plots.append(bar_plot(layers, rates, "firing rate per layer", "layer", "spikes per neuron per step"))
    energy, last = report.get("energy", {}), str(max(steps))
    if energy:
        labels = [model["label"] for model in energy.values()]
        plots.append(bar_plot(labels, {"ANN": [m["ann_pj"] for m in energy.values()],
                                       f"SNN T={last}": [m["snn_pj"][last] for m in energy.values()]},
                              "energy per inference", "cost model", "energy (log scale)", log_y=True, y_format=energy_text))
        parts = list(next(iter(energy.values()))["breakdown_pj"][last])
        shares = {part: [100 * m["breakdown_pj"][last][part] / m["snn_pj"][last] if m["snn_pj"][last] else 0.0
                         for m in energy.values()] for part in parts}
        plots.append(bar_plot(labels, shares, f"SNN energy breakdown at T={last}", "cost model", "share of the SNN's energy (%)",
                              stacked=True, y_format=lambda v: f"{v:.0f}"))
    header, rows = core_rows(report)
    if rows:
        cores = {chip: [int(row[i + 1]) if row[i + 1].isdigit() else 0 for row in rows] for i, chip in enumerate(header[1:])}
        plots.append(bar_plot([row[0] for row in rows], cores, "cores per layer (0: does not fit)", "layer", "cores",
                              y_format=lambda v: f"{v:.3g}"))
    return plots
