"""The Python API: `compile` returns a `CompiledNetwork` that runs, checks, reports and exports in memory; the
CLI is a thin face over it (toolchain/cli.py).

    import snnc
    net = snnc.compile("models/zoo/digits_cnn_qcfs8.onnx", neuron="gn", tau=4, data="digits", timesteps=(4, 8))
    net.run(x, timesteps=8)              # RunResult: predictions per step, spikes per layer
    net.check("lava")                    # Lava against the reference, spike for spike
    net.report["targets"]["reference"]   # the report as a dict (accuracy per T, spikes, energy, chip fit)
    net.export("model.nir")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

import nir
import numpy as np

from targets import get_target
from toolchain.data import load_dataset
from toolchain.errors import SnncError
from toolchain.evaluation import evaluate_targets, runs_per_timestep, target_report
from toolchain.graph import AnnGraph
from toolchain.ir.evaluate import evaluate_ann
from toolchain.ir.files import write_graph
from toolchain.ir.metadata import GraphMeta
from toolchain.ir.read import read_graph
from toolchain.onnx_runtime import predict
from toolchain.options import CompileOptions, parse_timesteps
from toolchain.outdir import staged_output
from toolchain.passes.portable_nir import PORTABLE_FILE, write_portable
from toolchain.pipeline import Imported, build_networks, calibrate, load_inputs, test_split
from toolchain.report import compare_runs, layer_table, terminal, versions, write_reports
from targets.result import RunResult


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CompiledNetwork:
    """An ONNX model compiled to spiking networks: one per time step count T and precision (`networks[T][p]`)."""

    def __init__(self, imported: Imported, graph: AnnGraph, networks: dict, options: CompileOptions, x, y, calibration_samples: int):
        self.imported, self.graph, self.options = imported, graph, options
        self.networks = {t: dict(nets) for t, nets in networks.items()}  # one mapping per T: save() replaces entries
        self.x, self.y, self.calibration_samples = x, y, calibration_samples

    @property
    def nir(self) -> nir.NIRGraph:
        """The float network for the largest T: what model.nir holds."""
        return self.networks[max(self.options.timesteps)]["float"]

    def _networks_at(self, precision: str) -> dict[int, nir.NIRGraph]:
        if precision not in self.networks[max(self.options.timesteps)]:
            raise SnncError(f"no network at {precision} precision was compiled; compile with a target that runs it")
        return {t: nets[precision] for t, nets in self.networks.items()}

    def run(self, x: np.ndarray | None = None, timesteps: int | None = None, target: str = "reference",
            precision: str = "float") -> RunResult:
        """Run samples (default: the test split) for T steps (default: the largest compiled) on a target."""
        steps = timesteps or max(self.options.timesteps)
        networks = self._networks_at(precision)
        if steps not in networks:
            raise SnncError(f"T={steps} was not compiled; compile with timesteps including {steps}")
        samples = self.x if x is None else np.asarray(x, np.float32)
        return get_target(target).run(networks[steps], samples, steps, self.options.target_options, self.options.threads,
                                      self.options.batch_size)

    def check(self, target: str, samples: int | None = None) -> dict:
        """Run a target and the reference on the same samples at the target's precision; compare per layer."""
        chosen = get_target(target)
        precision = chosen.precision(self.options.target_options)
        if precision is None:
            raise SnncError(f"target '{target}' runs nothing to check")
        count = samples or chosen.samples(self.options.target_options, len(self.x))
        networks = self._networks_at(precision)
        runs = runs_per_timestep(chosen, networks, self.x[:count], self.options, count_operations=False)
        reference = runs_per_timestep(get_target("reference"), networks, self.x[:count], self.options, count_operations=False)
        return compare_runs(target, runs[-1][1], reference[-1][1], bool(chosen.exact(self.options.target_options)))

    @cached_property
    def ann_predictions(self) -> np.ndarray:
        return predict(self.imported.model, self.x, self.options.threads)

    @cached_property
    def report(self) -> dict:
        """The whole report as a dict (report.json's schema), computed on first use from the networks in memory."""
        options, graph = self.options, self.graph
        report = {
            "neuron": options.neuron,
            "timesteps": list(options.timesteps),
            "model": {"path": str(self.imported.path), "sha256": _sha256(self.imported.path), "input_shape": list(graph.input_shape)},
            "data": {"name": options.data, "test_samples": int(len(self.x)), "calibration_samples": self.calibration_samples},
            "options": {**{k: v for k, v in asdict(options).items() if k not in ("threads", "batch_size", "targets")},
                        "targets": list(options.targets), "gn_form": options.group_form()},
            "versions": versions(),
            "notes": list(graph.notes),
            "ann": self._ann_entry(),
            "layers": layer_table(self.nir),
        }
        loihi = self.networks[max(options.timesteps)].get("loihi")
        if loihi is not None:
            report["quantization"] = {"weight_error": dict(GraphMeta.of(loihi).weight_error or {})}
        report.update(evaluate_targets(self.networks, self.x, self.y, self.ann_predictions, options))
        return report

    def _ann_entry(self) -> dict:
        """The ANN's accuracy (onnxruntime on the file), and where the frontend changed the function (MaxPool as
        average pooling), the rewritten graph's too, so that the report separates the two losses."""
        entry = {"accuracy": float((self.ann_predictions == self.y).mean())}
        rewrites = [note for note in self.imported.graph.notes if "replaced by average pooling" in note]
        if rewrites:
            predictions = np.concatenate([evaluate_ann(self.imported.graph, self.x[i: i + 256]).argmax(1)
                                          for i in range(0, len(self.x), 256)])
            entry["rewritten"] = {"what": "MaxPool as average pooling", "accuracy": float((predictions == self.y).mean())}
        return entry

    def export(self, path, precision: str = "float") -> nir.NIRGraph:
        """Write the network for the largest T as a NIR file; return the graph read back from it."""
        return write_graph(self._networks_at(precision)[max(self.options.timesteps)], Path(path))

    def save(self, outdir, echo=print) -> dict:
        """Write OUTDIR whole or not at all: model.nir (model_loihi.nir, model.t<T>.nir where they differ),
        model.portable.nir for other NIR tools (docs/nir.md), the target files and report.json/.md/.html. Everything reported runs on the networks read back from the files."""
        largest = max(self.options.timesteps)
        with staged_output(outdir) as folder:
            for precision, suffix in (("float", ""), ("loihi", "_loihi")):
                if precision not in self.networks[largest]:
                    continue
                shared = self.networks[largest][precision]
                written = write_graph(shared, folder / f"model{suffix}.nir")
                for t, nets in self.networks.items():
                    is_shared = nets[precision] is shared
                    nets[precision] = written if is_shared else write_graph(nets[precision], folder / f"model{suffix}.t{t}.nir")
            self.__dict__.pop("report", None)
            report = self.report
            report["nir_portable"] = write_portable(self.nir, folder / PORTABLE_FILE)
            for target in self.options.target_list():
                section = target.export(folder, self.nir, self.options.target_options)
                if section is not None:
                    report[target.name] = section
            write_reports(folder, report)
            written = sorted(path.name for path in folder.iterdir())
        echo(terminal(report))
        echo("wrote " + ", ".join(f"{outdir}/{name}" for name in written))
        return report


def compile(model, **options) -> CompiledNetwork:  # noqa: A001 - the API's verb, as in `snnc.compile`
    """Compile an ONNX model: import, calibrate on the training split of `data`, lower for every T and precision the
    targets need. Keywords: the fields of CompileOptions, the neuron model's options (tau, seed, cycle, ...) and the
    targets' (precision, lava_samples, ...). Nothing is written to disk."""
    return compile_with(model, CompileOptions.from_keywords(**options))


def compile_with(model, options: CompileOptions) -> CompiledNetwork:
    inputs = load_inputs(model, options)
    calibrated = calibrate(inputs.imported, inputs.calibration, options)
    networks = build_networks(calibrated, inputs.calibration, options)
    return CompiledNetwork(inputs.imported, calibrated, networks, options, inputs.x, inputs.y, int(len(inputs.calibration)))


def compile_model(model_path: str, outdir: str, options: CompileOptions, echo=print) -> dict:
    """`snnc compile`: compile, evaluate on every target and write OUTDIR; return the report."""
    return compile_with(model_path, options).save(outdir, echo)


def run_nir_file(nir_path: str, data: str, timesteps, outdir: str | None = None, samples: int | None = None,
                 threads: int = 2, batch_size: int | None = None, echo=print, device: str = "auto") -> dict:
    """`snnc run`: a NIR file on the reference runtime, with the accuracy and spikes for every T. Windowed networks
    run once per T, on `NAME.t<T>.nir` beside the file where compile wrote one (no ANN is known here); `device` as
    the reference target's option (cpu, cuda, auto)."""
    path = Path(nir_path)
    options = CompileOptions(timesteps=parse_timesteps(timesteps), data=data, samples=samples, threads=threads, batch_size=batch_size,
                             target_options={"device": device})
    snn = read_graph(path)
    networks = {t: read_graph(sibling) if (sibling := path.with_name(f"{path.stem}.t{t}.nir")).is_file() else snn
                for t in options.timesteps}
    reference = get_target("reference")
    runtime_input = tuple(int(d) for d in np.asarray(next(n for n in snn.nodes.values() if isinstance(n, nir.Input)).input_type["input"]).reshape(-1))
    outputs = int(np.prod(np.asarray(next(n for n in snn.nodes.values() if isinstance(n, nir.Output)).output_type["output"])))
    x, y = test_split(load_dataset(data), data, runtime_input, outputs, samples)
    runs = runs_per_timestep(reference, networks, x, options, count_operations=False)
    entry = target_report(runs, networks, y, np.full(len(y), -1), {})
    entry.pop("agreement_with_ann")
    meta = GraphMeta.of(snn)
    report = {
        "neuron": meta.neuron or "nir", "timesteps": list(options.timesteps),
        "model": {"path": str(nir_path), "sha256": _sha256(path), "input_shape": list(runtime_input)},
        "data": {"name": data, "test_samples": int(len(x)), "calibration_samples": 0},
        "versions": versions(), "notes": [], "layers": layer_table(snn), "targets": {"reference": entry},
    }
    echo("\n".join(f"T={t}: accuracy {100 * entry['accuracy'][str(t)]:.2f} %, {entry['spikes_per_inference'][str(t)]:.0f} "
                   "spikes per inference" for t in options.timesteps))
    if outdir:
        with staged_output(outdir) as folder:
            (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        echo(f"wrote {outdir}/report.json")
    return report
