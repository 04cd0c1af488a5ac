"""A sweep's report: the Pareto fronts of accuracy against energy per inference and latency, and the recommendation
per cost model (the cheapest configuration within the accuracy budget), as sweep.md and sweep.html.

A sweep (sweep.json, docs/sweep.md) is {"model", "data", "timesteps", "max_loss", "ann_accuracy", "rows",
"recommendations"}; each row is one configuration (neuron, tau, precision) with its figures per T. A point is one
row at one T.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from toolchain.report.html import STYLE, table as html_table
from toolchain.report.render import table as markdown_table
from toolchain.report.sections import energy_text
from toolchain.report.svg import scatter_plot


@dataclass(frozen=True)
class Point:
    row: dict
    timesteps: int

    @property
    def accuracy(self) -> float:
        return self.row["accuracy"][str(self.timesteps)]

    @property
    def latency(self) -> int:
        return self.row["latency_steps"][str(self.timesteps)]

    def energy(self, cost_model: str) -> float:
        return self.row["energy_pj"][cost_model]["snn"][str(self.timesteps)]

    @property
    def label(self) -> str:
        return f"{configuration_label(self.row)} T={self.timesteps}"


def configuration_label(row: dict) -> str:
    """'gn τ=4 float': the neuron, its τ where it takes one, the precision."""
    tau = f" τ={row['tau']}" if row.get("tau") is not None else ""
    return f"{row['neuron']}{tau} {row['precision']}"


def points(rows: list[dict]) -> list[Point]:
    return [Point(row, int(t)) for row in rows for t in row["timesteps"]]


def pareto_front(candidates: list[Point], cost) -> list[Point]:
    """The points no other point beats on both cost (lower) and accuracy (higher), by increasing cost."""
    front = []
    for point in sorted(candidates, key=lambda p: (cost(p), -p.accuracy)):
        if not front or point.accuracy > front[-1].accuracy:
            front.append(point)
    return front


def cost_models(rows: list[dict]) -> dict[str, dict]:
    """{cost model name: its chip, label and regime}, in the order of the first row."""
    return {name: {k: entry[k] for k in ("chip", "label", "regime")} for name, entry in rows[0]["energy_pj"].items()} if rows else {}


def recommendations(rows: list[dict], ann_accuracy: float, max_loss: float) -> list[dict]:
    """Per cost model, the cheapest point (energy per inference) whose accuracy is within `max_loss` points (per
    cent) of the ANN's; ties go to the more accurate, then the shorter latency. One sentence each."""
    floor = ann_accuracy - max_loss / 100
    every = points(rows)
    chosen = []
    for name, model in cost_models(rows).items():
        within = [p for p in every if p.accuracy >= floor - 1e-12]
        entry = {"cost_model": name, "chip": model["chip"], "label": model["label"], "max_loss": max_loss}
        if not within:
            best = max(every, key=lambda p: p.accuracy)
            entry.update(configuration=None, sentence=(
                f"On {model['label']}, no configuration is within {_points(max_loss)} of the ANN ({100 * ann_accuracy:.2f} %); "
                f"the most accurate is {best.label} at {100 * best.accuracy:.2f} %."))
        else:
            best = min(within, key=lambda p: (p.energy(name), -p.accuracy, p.latency))
            entry.update(configuration={"neuron": best.row["neuron"], "tau": best.row["tau"], "precision": best.row["precision"],
                                        "timesteps": best.timesteps},
                         accuracy=best.accuracy, energy_pj=best.energy(name), latency_steps=best.latency,
                         sentence=(f"On {model['label']}, the cheapest configuration within {_points(max_loss)} of the ANN "
                                   f"({100 * ann_accuracy:.2f} %) is {best.label}: {100 * best.accuracy:.2f} % accuracy, "
                                   f"{energy_text(best.energy(name))} per inference, latency {best.latency} step{'' if best.latency == 1 else 's'}."))
        chosen.append(entry)
    return chosen


def _points(loss: float) -> str:
    return f"{loss:g} point{'' if loss == 1 else 's'}"


def _row_cells(row: dict, t: int, first_model: str | None) -> list[str]:
    key = str(t)
    energy = energy_text(row["energy_pj"][first_model]["snn"][key]) if first_model else "—"
    return [configuration_label(row), str(t), f"{100 * row['accuracy'][key]:.2f} %", f"{row['spikes_per_inference'][key]:.0f}",
            energy, str(row["latency_steps"][key])]


def result_table(sweep: dict) -> tuple[list[str], list[list[str]]]:
    """Every point: configuration, T, accuracy, spikes and energy per inference (first chip cost model), latency."""
    models = cost_models(sweep["rows"])
    chip_models = [name for name, m in models.items() if m["regime"] != "compute only"] or list(models)
    first = chip_models[0] if chip_models else None
    header = ["configuration", "T", "accuracy", "spikes/inf", f"energy/inf ({models[first]['label']})" if first else "energy/inf", "latency (steps)"]
    return header, [_row_cells(p.row, p.timesteps, first) for p in points(sweep["rows"])]


def front_table(sweep: dict, name: str) -> tuple[list[str], list[list[str]]]:
    front = pareto_front(points(sweep["rows"]), lambda p: p.energy(name))
    return (["configuration", "T", "accuracy", "energy/inf", "latency (steps)"],
            [[configuration_label(p.row), str(p.timesteps), f"{100 * p.accuracy:.2f} %", energy_text(p.energy(name)), str(p.latency)]
             for p in front])


def _header_lines(sweep: dict) -> list[str]:
    data = sweep["data"]
    return [f"model: {sweep['model']['path']}", f"data: {data['name']}, {data['test_samples']} test samples",
            f"time steps: {', '.join(map(str, sweep['timesteps']))}; {len(sweep['rows'])} configurations",
            f"ANN accuracy (onnxruntime): {100 * sweep['ann_accuracy']:.2f} %; accuracy budget: {_points(sweep['max_loss'])}"]


def markdown(sweep: dict) -> str:
    lines = [f"# snnc sweep: {sweep['model']['path']}", "", *[f"- {r['sentence']}" for r in sweep["recommendations"]], ""]
    lines += [f"- {line}" for line in _header_lines(sweep)]
    for name, model in cost_models(sweep["rows"]).items():
        lines += ["", f"## Pareto front: accuracy vs energy per inference ({model['label']})", "", *markdown_table(*front_table(sweep, name))]
    latency_front = pareto_front(points(sweep["rows"]), lambda p: p.latency)
    lines += ["", "## Pareto front: accuracy vs latency", "",
              *markdown_table(["configuration", "T", "accuracy", "latency (steps)"],
                              [[configuration_label(p.row), str(p.timesteps), f"{100 * p.accuracy:.2f} %", str(p.latency)] for p in latency_front])]
    lines += ["", "## Every configuration", "", *markdown_table(*result_table(sweep))]
    return "\n".join(lines) + "\n"


def plots(sweep: dict) -> list[str]:
    """Accuracy vs energy per inference for every cost model, and accuracy vs latency; each with its Pareto front."""
    every = points(sweep["rows"])
    reference = ("ANN", sweep["ann_accuracy"])
    by_configuration: dict[str, list[Point]] = {}
    for p in every:
        by_configuration.setdefault(configuration_label(p.row), []).append(p)
    drawn = []
    for name, model in cost_models(sweep["rows"]).items():
        cost = lambda p, name=name: p.energy(name)
        front = pareto_front(every, cost)
        series = {label: ([cost(p) for p in pts], [p.accuracy for p in pts]) for label, pts in by_configuration.items()}
        drawn.append(scatter_plot(series, f"accuracy vs energy per inference ({model['label']})", "energy per inference (log scale)",
                                  "accuracy", front=([cost(p) for p in front], [p.accuracy for p in front]), reference=reference,
                                  x_format=energy_text))
    front = pareto_front(every, lambda p: p.latency)
    series = {label: ([p.latency for p in pts], [p.accuracy for p in pts]) for label, pts in by_configuration.items()}
    drawn.append(scatter_plot(series, "accuracy vs latency", "latency (steps, log scale)", "accuracy",
                              front=([p.latency for p in front], [p.accuracy for p in front]), reference=reference,
                              x_format=lambda v: f"{v:g}"))
    return drawn


def html(sweep: dict) -> str:
    title = f"snnc sweep: {escape(sweep['model']['path'])}"
    body = [f"<h1>{title}</h1>", "<ul>", *[f"<li><b>{escape(r['sentence'])}</b></li>" for r in sweep["recommendations"]],
            "</ul>", "<ul>", *[f"<li>{escape(line)}</li>" for line in _header_lines(sweep)], "</ul>"]
    if sweep["rows"]:
        body += ["<h2>Pareto fronts</h2>", "<div class='plots'>", *plots(sweep), "</div>",
                 "<h2>Every configuration</h2>", html_table(*result_table(sweep))]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{title}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
