"""The commands' work: compile (ONNX → NIR → targets → report) and run (NIR → reference → report)."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nir
import numpy as np

from targets.chips import load_chips
from targets.reference import ReferenceRuntime
from toolchain.costs import energy_report, resource_report, structure_of
from toolchain.data import check_labels, fit_to_input, load_dataset
from toolchain.errors import SnncError
from toolchain.frontend import import_onnx, load_onnx
from toolchain.nir_conventions import differences, latency_steps, read_graph, windowed_layers
from toolchain.onnx_runtime import predict
from toolchain.outdir import staged_output
from toolchain.graph import Activation, AnnGraph
from toolchain.passes import (
    calibrate_distribution, calibrate_thresholds, canonicalise, expand_group_neurons, lower_to_nir, quantize_loihi,
)
from toolchain.report import compare_runs, layer_table, operations_entry, target_entry, terminal, versions, write_reports

# What each target's neurons can emit per step: graded counts (compact group neurons) or binary spikes only.
TARGETS = {"reference": "graded", "nir": "binary", "lava": "graded", "sanafe": "binary"}  # TODO(merge): sanafe target
GN_FORMS = ("compact", "expanded")
PRECISIONS = ("float", "loihi")
DA_CALIBRATION_SAMPLES = 512  # enough for per-channel means; bounds the memory of the calibration passes
LAVA_TAGS = ("fixed_pt", "floating_pt")


@dataclass
class CompileOptions:
    neuron: str = "if"
    targets: tuple[str, ...] = ("reference",)
    timesteps: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    data: str = "digits"
    percentile: float = 99.9
    per_channel: bool = False
    calibration_samples: int = 1000
    samples: int | None = None
    maxpool: str = "error"
    threads: int = 2
    batch_size: int | None = None
    neuron_options: dict = field(default_factory=dict)
    gn_form: str | None = None
    precision: str = "float"
    lava_samples: int = 20
    lava_tag: str = "fixed_pt"
    sanafe_samples: int = 5  # TODO(merge): the sanafe target's option
    parallel_calibration: str = "search"

    def __post_init__(self):
        for name in ("calibration_samples", "samples", "threads", "batch_size", "lava_samples", "sanafe_samples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise SnncError(f"{name.replace('_', '-')} must be a whole number, at least 1 (got {value!r})")

    def needs_loihi_graph(self) -> bool:
        return self.precision == "loihi" or ("lava" in self.targets and self.lava_tag == "fixed_pt")

    def resolved_gn_form(self) -> str | None:
        """compact or expanded for group neurons: the user's choice, else expanded if a target needs binary spikes."""
        if self.neuron != "gn":
            return None
        if self.gn_form is not None:
            if self.gn_form not in GN_FORMS:
                raise SnncError(f"--gn-form must be one of {', '.join(GN_FORMS)} (got '{self.gn_form}')")
            return self.gn_form
        return "expanded" if any(TARGETS[t] == "binary" for t in self.targets) else "compact"


def parse_timesteps(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        values = ()
    if not values or values[0] < 1:
        raise SnncError(f"--timesteps takes positive integers separated by commas, e.g. 1,2,4,8 (got '{text}')")
    return values


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise SnncError(f"{option} must be one of {', '.join(choices)} (got '{value}')")
    return value


def parse_targets(text: str) -> tuple[str, ...]:
    targets = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise SnncError(f"unknown target '{','.join(unknown) or text}': choose from {', '.join(TARGETS)}")
    return targets


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _test_split(data: str, input_shape, outputs: int, samples: int | None):
    dataset = load_dataset(data)
    check_labels(dataset, outputs, data)
    x = fit_to_input(dataset.x_test, input_shape, data)
    y = dataset.y_test
    if samples:
        x, y = x[:samples], y[:samples]
    if not len(x):
        raise SnncError(f"dataset '{data}' has no test samples")
    return dataset, x, y


def _counted_entry(graph: nir.NIRGraph, result, y, steps: list[int], ann_predictions, macs: dict[str, int]) -> dict:
    """A target entry with the run's exact operation counts (docs/energy.md)."""
    return {**target_entry(result, y, steps, ann_predictions), **operations_entry(structure_of(graph), result, macs)}


def _simulate(networks: dict[int, nir.NIRGraph], x, y, ann_predictions, options: CompileOptions, macs: dict[str, int]) -> dict:
    """A reference target entry from the network for each T. Causal neurons: one run at the largest T gives every
    prefix. Windowed neurons (two-phase, permuted) need a whole window before firing, so T is part of the neuron:
    one run per T."""
    steps = list(options.timesteps)
    largest = networks[max(steps)]
    if not windowed_layers(largest):
        result = ReferenceRuntime(largest, threads=options.threads).run(
            x, max(steps), batch_size=options.batch_size, per_neuron_steps=steps)
        entry = _counted_entry(largest, result, y, steps, ann_predictions, macs)
    else:
        entries = [_counted_entry(networks[t], ReferenceRuntime(networks[t], threads=options.threads).run(
            x, t, batch_size=options.batch_size, label=f"SNN (reference) T={t}", per_neuron_steps=(t,)),
            y, [t], ann_predictions, macs) for t in steps]
        entry = entries[-1]
        for key in ("accuracy", "agreement_with_ann", "spikes_per_inference", "synops_per_inference"):
            entry[key] = {k: v for e in entries for k, v in e[key].items()}
    entry["latency_steps"] = {str(t): latency_steps(networks[t], t) for t in steps}
    return entry


def _has_relu(graph: AnnGraph) -> bool:
    return any(isinstance(n.op, Activation) and n.op.kind == "relu" for n in graph.nodes.values())


def _levels_differ(graph: AnnGraph, timesteps: int) -> bool:
    """A QCFS(L) layer run by parallel neurons for T ≠ L steps needs distribution-aware calibration."""
    return any(isinstance(n.op, Activation) and n.op.levels != timesteps for n in graph.nodes.values())


def compile_model(model_path: str, outdir: str, options: CompileOptions, echo=print) -> dict:
    """Compile an ONNX model into OUTDIR (model.nir, report.json, report.md); return the report."""
    if "sanafe" in options.targets:  # TODO(merge): the target interface's availability check
        from targets.sanafe import require
        require()
    path = Path(model_path)
    model = load_onnx(path)
    graph = canonicalise(import_onnx(path, options.maxpool, model=model))
    dataset, x, y = _test_split(options.data, graph.input_shape, int(np.prod(graph.shape_of(graph.output))), options.samples)
    calibration = fit_to_input(dataset.x_train[: options.calibration_samples], graph.input_shape, options.data).copy()
    del dataset  # a copy above, so that the rest of the training split is freed (188 MB for Fashion-MNIST)
    training_free = options.neuron == "parallel" and _has_relu(graph)
    if training_free:  # the parallel method's training-free path: per-channel maxima as thresholds (methods.md §6.2)
        graph = calibrate_thresholds(graph, model, calibration, 100.0, True, options.threads)
        graph.notes.append("plain-ReLU model with parallel neurons: per-channel maximum thresholds, then distribution-aware calibration")
    else:
        graph = calibrate_thresholds(graph, model, calibration, options.percentile, options.per_channel, options.threads)
    gn_form = options.resolved_gn_form()
    finish = expand_group_neurons if gn_form == "expanded" else (lambda g: g)

    def build(ann: AnnGraph) -> tuple[nir.NIRGraph, nir.NIRGraph | None]:
        compact = lower_to_nir(ann, options.neuron, options.neuron_options)
        return finish(compact), (finish(quantize_loihi(compact)) if options.needs_loihi_graph() else None)

    calibrated_steps = [t for t in options.timesteps if training_free or _levels_differ(graph, t)] if options.neuron == "parallel" else []
    shared = build(graph) if len(calibrated_steps) < len(options.timesteps) else None
    networks = {t: build(calibrate_distribution(copy.deepcopy(graph), calibration[:DA_CALIBRATION_SAMPLES], t, options.parallel_calibration))
                if t in calibrated_steps else shared for t in options.timesteps}
    if calibrated_steps:
        graph.notes.append(f"parallel neurons with distribution-aware calibration for T = {', '.join(map(str, calibrated_steps))} "
                           f"(model.nir is the network for T={max(options.timesteps)})")
    snn, loihi = networks[max(options.timesteps)]

    report = {
        "neuron": options.neuron,
        "timesteps": list(options.timesteps),
        "model": {"path": str(model_path), "sha256": _sha256(path), "input_shape": list(graph.input_shape)},
        "data": {"name": options.data, "test_samples": int(len(x)), "calibration_samples": int(len(calibration))},
        "options": {**{k: v for k, v in asdict(options).items() if k not in ("threads", "batch_size", "gn_form")}, "gn_form": gn_form},
        "versions": versions(),
        "notes": list(graph.notes),
    }
    with staged_output(outdir) as folder:
        written = _write_and_check(snn, folder / "model.nir")
        written_loihi = _write_and_check(loihi, folder / "model_loihi.nir") if loihi is not None else None
        ann_predictions = predict(model, x, options.threads)
        report["ann"] = {"accuracy": float((ann_predictions == y).mean())}
        report["layers"] = layer_table(written)
        report["targets"] = {}
        report["checks"] = []
        if written_loihi is not None:
            report["quantization"] = {"weight_error": dict(written_loihi.metadata["snnc"].get("weight_error", {}))}
        # Lava runs a few samples; the reference gives the full-set figures beside it, at both precisions.
        # The largest T runs from what was read back from the files; other T's networks differ only by calibration.
        largest = max(options.timesteps)
        float_networks = {t: written if t == largest else net[0] for t, net in networks.items()}
        loihi_networks = {t: written_loihi if t == largest else net[1] for t, net in networks.items()}
        macs = structure_of(written).macs  # the ANN's MACs per layer, from the float network
        # first, so that a network SANA-FE cannot hold stops the compile before the long runs
        sanafe = _sanafe(written, x, y, ann_predictions, options, macs, load_chips()) if "sanafe" in options.targets else None  # TODO(merge)
        if "reference" in options.targets or "lava" in options.targets or "sanafe" in options.targets:
            chosen = loihi_networks if options.precision == "loihi" else float_networks
            report["targets"]["reference"] = _simulate(chosen, x, y, ann_predictions, options, macs)
            report["targets"]["reference"]["precision"] = options.precision
            if written_loihi is not None and options.precision != "loihi":
                report["targets"]["reference-loihi"] = _simulate(loihi_networks, x, y, ann_predictions, options, macs)
                report["targets"]["reference-loihi"]["precision"] = "loihi"
        if "lava" in options.targets:
            lava_graph = written_loihi if options.lava_tag == "fixed_pt" else written
            entry, check = _lava(lava_graph, x, y, ann_predictions, options)
            report["targets"]["lava"] = entry
            report["checks"].append(check)
        if sanafe is not None:  # TODO(merge): the sanafe target's entry and check
            report["targets"]["sanafe"], check = sanafe
            report["checks"].append(check)
        if "nir" in options.targets:
            report["nir"] = {"file": "model.nir", "nodes": len(written.nodes), "read_back_identical": True}
        chips = load_chips()
        if "reference" in report["targets"]:
            report["energy"] = energy_report(report["targets"]["reference"], chips)
        # Graded-spike chips run the network as compiled; binary ones run group neurons as their binary members.
        report["resources"] = resource_report(chips, written, expand_group_neurons(written))
        write_reports(folder, report)
    echo(terminal(report))
    echo(f"wrote {outdir}/model.nir, {outdir}/report.json, {outdir}/report.md, {outdir}/report.html")
    return report


def _write_and_check(graph: nir.NIRGraph, path: Path) -> nir.NIRGraph:
    """Write a NIR file and read it back; everything downstream runs on what was read."""
    nir.write(str(path), graph)
    written = read_graph(path)
    mismatch = differences(graph, written)
    if mismatch:
        raise AssertionError(f"{path.name} does not read back as the compiled network: {mismatch[:5]}")
    return written


def _lava(graph: nir.NIRGraph, x, y, ann_predictions, options: CompileOptions) -> tuple[dict, dict]:
    """Run the first --lava-samples samples in Lava and in the reference runtime at the same precision; compare."""
    from targets.lava import run_lava

    count = min(options.lava_samples, len(x))
    x_lava, y_lava, timesteps = x[:count], y[:count], max(options.timesteps)
    lava = run_lava(graph, x_lava, timesteps, options.lava_tag)
    reference = ReferenceRuntime(graph, threads=options.threads).run(x_lava, timesteps, label="reference (Lava's samples)")
    entry = target_entry(lava, y_lava, list(options.timesteps), ann_predictions[:count])
    entry.update(tag=options.lava_tag, precision="loihi" if options.lava_tag == "fixed_pt" else "float",
                 latency_steps={str(timesteps): latency_steps(graph, timesteps)})
    return entry, compare_runs("lava", lava, reference, options.lava_tag == "fixed_pt")


def _sanafe(graph: nir.NIRGraph, x, y, ann_predictions, options: CompileOptions, macs: dict[str, int], chips: dict) -> tuple[dict, dict]:
    """TODO(merge): the sanafe target's run. The first --sanafe-samples samples on SANA-FE and on the reference
    runtime in SANA-FE's arithmetic (exact check); SANA-FE's energy and latency beside snnc's Loihi estimate for
    the same spikes."""
    from targets.sanafe import reference_run, run_sanafe
    from targets.sanafe.compare import energy_comparison

    count, timesteps = min(options.sanafe_samples, len(x)), max(options.timesteps)
    result, costs = run_sanafe(graph, x[:count], timesteps)
    reference = reference_run(graph, x[:count], timesteps, per_neuron_steps=(timesteps,))
    entry = target_entry(result, y[:count], list(options.timesteps), ann_predictions[:count])
    estimate = energy_report(_counted_entry(graph, reference, y[:count], [timesteps], ann_predictions[:count], macs), chips)["loihi1"]
    spikes = sum(result.spikes.values()) / count
    entry.update(precision="sanafe", energy={**costs["energy_j"], "per": "inference", "unit": "J"},
                 latency={"per_inference_s": costs["latency_s"], "per_step_s": costs["latency_per_step_s"]},
                 cores=costs["cores"], synapses=costs["synapses"], wall_s_per_sample=costs["wall_s_per_sample"],
                 energy_vs_snnc=energy_comparison(costs, estimate, timesteps, spikes),
                 latency_steps={str(timesteps): latency_steps(graph, timesteps)})
    return entry, compare_runs("sanafe", result, reference, True)


def run_nir(nir_path: str, data: str, timesteps: tuple[int, ...], outdir: str | None, samples: int | None,
            threads: int, batch_size: int | None = None, echo=print) -> dict:
    """Run a NIR file on the reference runtime and report accuracy and spikes (no ANN is known here)."""
    snn = read_graph(nir_path)
    runtime = ReferenceRuntime(snn, threads=threads)
    outputs = int(np.prod(np.asarray(snn.nodes[runtime.output].output_type["output"])))
    dataset, x, y = _test_split(data, runtime.input_shape, outputs, samples)
    result = runtime.run(x, max(timesteps), batch_size=batch_size)
    entry = target_entry(result, y, list(timesteps), np.full(len(y), -1))
    entry.pop("agreement_with_ann")
    meta = snn.metadata.get("snnc", {}) if isinstance(snn.metadata, dict) else {}
    report = {
        "neuron": str(meta.get("neuron", "nir")), "timesteps": list(timesteps),
        "model": {"path": str(nir_path), "sha256": _sha256(Path(nir_path)), "input_shape": list(runtime.input_shape)},
        "data": {"name": data, "test_samples": int(len(x)), "calibration_samples": 0},
        "versions": versions(), "notes": [], "layers": layer_table(snn), "targets": {"reference": entry},
    }
    echo("\n".join(f"T={t}: accuracy {100 * entry['accuracy'][str(t)]:.2f} %, {entry['spikes_per_inference'][str(t)]:.0f} spikes per inference" for t in timesteps))
    if outdir:
        with staged_output(outdir) as folder:
            (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        echo(f"wrote {outdir}/report.json")
    return report
