"""`snnc sweep`: every configuration (neuron × τ × precision) of one model compiled and evaluated on Ray, each
for every T in one task, merged into OUTDIR/sweep.json, sweep.md and sweep.html with the Pareto fronts and the
cheapest configuration within the accuracy budget per cost model (docs/sweep.md).

The driver does the shared work once (import, data, calibration, the ANN's predictions) and puts it in Ray's
object store; per configuration a task builds the networks (`pipeline.build_networks`) and one task per shard of
the test set evaluates them (`evaluation.evaluate_targets`), as a compile does. Tasks are retried when their
worker dies (`RETRIES`); a finished configuration is cached in OUTDIR/cache/<key>.json, so that a sweep started
again with the same OUTDIR skips it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from toolchain import __version__
from toolchain.chips import load_chips
from toolchain.costs import energy_report
from toolchain.errors import SnncError
from toolchain.evaluation import evaluate_targets
from toolchain.ir.metadata import PRECISIONS
from toolchain.neurons import get_model, model_names
from toolchain.onnx_runtime import predict
from toolchain.options import CompileOptions, parse_counts
from toolchain.pipeline import Inputs, build_networks, calibrate, load_inputs
from toolchain.report import versions
from toolchain.report.sweep import html, markdown, recommendations

RAY_MISSING = "snnc sweep needs Ray, an optional extra: run `pip install 'snnc[sweep]'` (or `make setup`)"
RETRIES = 3  # attempts after the first when a task's worker dies
# Tests only: "<configuration label>:<marker file>" ends the worker evaluating that configuration once (when the
# marker does not exist yet, creating it), as a killed machine would.
CRASH_ONCE_VARIABLE = "SNNC_SWEEP_CRASH_ONCE"
MERGED_FRACTIONS = ("accuracy", "agreement_with_ann")
MERGED_MEANS = ("spikes_per_inference", "synops_per_inference")
MERGED_TOTALS = ("spikes_per_layer", "synops", "graded_synops")


def require_ray():
    """The ray module, or SnncError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SnncError(RAY_MISSING) from None
    return ray


@dataclass(frozen=True)
class Configuration:
    """One point of the sweep apart from T: the neuron model, its τ (None for models without one), the precision."""

    neuron: str
    tau: int | None
    precision: str

    @property
    def label(self) -> str:
        return f"{self.neuron}{'' if self.tau is None else f' tau={self.tau}'} {self.precision}"

    def options(self, base: CompileOptions) -> CompileOptions:
        """`base` for this configuration, each task's runtime on one thread."""
        return replace(base, neuron=self.neuron, neuron_options={} if self.tau is None else {"tau": self.tau},
                       target_options={**base.target_options, "precision": self.precision}, threads=1)


def _names(value, what: str, known) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SnncError(f"unknown {what} '{','.join(unknown) or value}': choose from {', '.join(known)}")
    return names


def configurations(neuron_names, taus, precisions) -> list[Configuration]:
    """Every neuron × τ × precision; τ only for models that take it, the others once."""
    chosen = _names(neuron_names, "neuron model", model_names())
    tau_values = parse_counts(taus, "--tau") if taus else ()
    precision_names = _names(precisions, "precision", PRECISIONS)
    found = []
    for name in chosen:
        takes_tau = any(o.name == "tau" for o in get_model(name).options)
        for tau in (tau_values or (None,)) if takes_tau else (None,):
            found += [Configuration(name, tau, p) for p in precision_names]
    return found


def cache_key(model_sha256: str, options: CompileOptions) -> str:
    """What decides a configuration's row: the model file's bytes, the data and every option of the compile."""
    described = {"model": model_sha256, "snnc": __version__, "data": options.data, "samples": options.samples,
                 "neuron": options.neuron, "timesteps": list(options.timesteps), "targets": list(options.targets),
                 "neuron_options": options.neuron_options, "target_options": options.target_options,
                 **{k: getattr(options, k) for k in ("percentile", "per_channel", "calibration_samples", "maxpool",
                                                     "snn_calibration", "drop_lrn")}}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class Shared:
    """What the driver computes once and every task reads from the object store."""

    inputs: Inputs
    ann_predictions: np.ndarray
    calibrated: dict  # {distribution-aware: the calibrated ANN graph}, as `pipeline.calibrate` branches


def prepare(model, base: CompileOptions, chosen: list[Configuration]) -> Shared:
    inputs = load_inputs(model, base)
    predictions = predict(inputs.imported.model, inputs.x, base.threads)
    calibrated = {}
    for configuration in chosen:
        options = configuration.options(base)
        if options.model.distribution_aware not in calibrated:
            calibrated[options.model.distribution_aware] = calibrate(inputs.imported, inputs.calibration, replace(options, threads=base.threads))
    return Shared(inputs, predictions, calibrated)


def build_configuration(configuration: Configuration, base: CompileOptions, shared: Shared) -> dict:
    """The networks of one configuration, networks[T][precision], as `snnc compile` builds them."""
    _one_thread()
    options = configuration.options(base)
    graph = copy.deepcopy(shared.calibrated[options.model.distribution_aware])
    return build_networks(graph, shared.inputs.calibration, options)


def evaluate_shard(configuration: Configuration, base: CompileOptions, networks: dict, shared: Shared,
                   start: int, stop: int) -> dict:
    """Every target's report entry and the cross-target checks for test samples start..stop, as `snnc compile`
    reports them: {"targets": {...}, "checks": [...]}."""
    _one_thread()
    _crash_once_when_asked(configuration)
    inputs = shared.inputs
    report = evaluate_targets(networks, inputs.x[start:stop], inputs.y[start:stop], shared.ann_predictions[start:stop],
                              configuration.options(base))
    return {"targets": report["targets"], "checks": report["checks"]}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _crash_once_when_asked(configuration: Configuration) -> None:
    label, _, marker = os.environ.get(CRASH_ONCE_VARIABLE, "").partition(":")
    if label == configuration.label and marker and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


def merge_shards(shards: list[dict]) -> dict:
    """One entry per target from the shards' entries: fractions and means weighted by samples, totals summed.
    Accuracy is counted back from each shard's fraction, so it equals the unsharded run's exactly."""
    if len(shards) == 1:
        return shards[0]
    merged = {}
    for name in shards[0]:
        entries = [shard[name] for shard in shards]
        total = sum(e["samples"] for e in entries)
        entry = copy.deepcopy(entries[0])
        entry["samples"] = total
        for key in MERGED_FRACTIONS:
            entry[key] = {t: sum(round(e[key][t] * e["samples"]) for e in entries) / total for t in entries[0][key]}
        for key in MERGED_MEANS:
            if key in entry:
                entry[key] = {t: sum(e[key][t] * e["samples"] for e in entries) / total for t in entries[0][key]}
        for key in MERGED_TOTALS:
            if key in entry:
                entry[key] = {k: sum(e[key][k] for e in entries) for k in entries[0][key]}
        entry["firing_rate_per_layer"] = {k: sum(e["firing_rate_per_layer"][k] * e["samples"] for e in entries) / total
                                          for k in entries[0]["firing_rate_per_layer"]}
        merged[name] = entry
    return merged


def row_of(configuration: Configuration, key: str, entries: dict, checks: dict[str, bool], ann_accuracy: float) -> dict:
    """sweep.json's row of one configuration (docs/sweep.md), from its targets' merged entries and whether each
    cross-target check passed (on every shard)."""
    reference = entries["reference"]
    energy = energy_report(reference, load_chips())
    return {
        "neuron": configuration.neuron, "tau": configuration.tau, "precision": configuration.precision, "key": key,
        "samples": reference["samples"], "timesteps": [int(t) for t in reference["accuracy"]],
        "ann_accuracy": ann_accuracy,
        "accuracy": reference["accuracy"], "agreement_with_ann": reference["agreement_with_ann"],
        "spikes_per_inference": reference["spikes_per_inference"], "synops_per_inference": reference["synops_per_inference"],
        "latency_steps": reference["latency_steps"],
        "energy_pj": {name: {"chip": m["chip"], "label": m["label"], "regime": m["regime"], "ann": m["ann_pj"], "snn": m["snn_pj"]}
                      for name, m in energy.items()},
        "targets": {name: {"precision": e.get("precision"), "samples": e["samples"], "accuracy": e["accuracy"]}
                    for name, e in entries.items() if name != "reference"},
        "checks_passed": checks,
    }


def shard_bounds(samples: int, shard_size: int | None) -> list[tuple[int, int]]:
    size = shard_size or samples
    return [(start, min(start + size, samples)) for start in range(0, samples, size)]


class Cache:
    """Finished rows in OUTDIR/cache/<key>.json, each written whole (a temporary file renamed into place)."""

    def __init__(self, outdir: Path | None):
        self.folder = outdir / "cache" if outdir else None

    def get(self, key: str) -> dict | None:
        if self.folder is None:
            return None
        try:
            return json.loads((self.folder / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None  # absent, or unreadable: computed again

    def put(self, key: str, row: dict) -> None:
        if self.folder is not None:
            write_whole(self.folder / f"{key}.json", json.dumps(row, indent=2) + "\n")


def write_whole(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)


def _start_ray(ray, address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=num_cpus or min(2, os.cpu_count() or 1), **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise SnncError(f"could not {'join the Ray cluster at ' + address if address else 'start a local Ray'}: "
                        f"{' '.join(str(err).split())[:200]}")
    return True


def sweep(model, data: str = "digits", neurons=("if", "gn", "parallel"), taus=(2, 4, 8), timesteps=(1, 2, 4, 8, 16, 32),
          precisions=("float",), targets=("reference",), max_loss: float = 1.0, samples: int | None = None,
          shard_size: int | None = None, address: str | None = None, num_cpus: int | None = None, outdir=None,
          threads: int = 2, batch_size: int | None = None, echo=print, **target_options) -> dict:
    """Compile and evaluate every configuration on Ray; return the sweep (sweep.json's content, its "rows" one per
    configuration). With `outdir`, finished configurations are cached there and skipped when found, and
    sweep.json, sweep.md and sweep.html are written. `threads`: the driver's (onnxruntime, calibration); every
    task runs on one. Other keywords are the targets' options (`lava_samples`, ...), as `snnc.compile` takes them;
    the reference's precision is swept by `precisions`."""
    if "precision" in target_options:
        raise SnncError("the sweep takes precisions as a list: --precision float,loihi (precisions=(...) in Python)")
    if not max_loss >= 0:
        raise SnncError(f"--max-loss must be a number of accuracy points, at least 0 (got {max_loss})")
    if shard_size is not None and (not isinstance(shard_size, int) or shard_size < 1):
        raise SnncError(f"--shard-size must be a whole number, at least 1 (got {shard_size!r})")
    chosen = configurations(neurons, taus, precisions)
    base = CompileOptions(targets=targets, timesteps=timesteps, data=data, samples=samples, threads=threads,
                          batch_size=batch_size, target_options=target_options)
    ray = require_ray()
    model_path = Path(model)
    if not model_path.is_file():
        raise SnncError(f"{model_path}: no such model file; pass the path of an .onnx file")
    folder = Path(outdir) if outdir else None
    if folder is not None and folder.exists() and not folder.is_dir():
        raise SnncError(f"{folder}: exists and is not a folder; pass a folder path with -o")
    model_sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    cache = Cache(folder)
    keys = {c: cache_key(model_sha, c.options(base)) for c in chosen}
    cached = {c: row for c in chosen if (row := cache.get(keys[c])) is not None}
    if cached:
        echo(f"{len(cached)} of {len(chosen)} configurations found in {folder}/cache: skipped")
    started = time.monotonic()
    shared = prepare(model_path, base, [c for c in chosen if c not in cached])
    ann_accuracy = float((shared.ann_predictions == shared.inputs.y).mean())
    rows = dict(cached)
    todo = [c for c in chosen if c not in cached]
    if todo:
        started_ray = _start_ray(ray, address, num_cpus)
        try:
            for configuration, entries, checks in _run_on_ray(ray, todo, base, shared, shard_size):
                rows[configuration] = row_of(configuration, keys[configuration], entries, checks, ann_accuracy)
                cache.put(keys[configuration], rows[configuration])
                echo(f"[{len(rows)}/{len(chosen)}, {time.monotonic() - started:.0f} s] {configuration.label}: " + ", ".join(
                    f"T={t} {100 * a:.2f} %" for t, a in rows[configuration]["accuracy"].items()))
        finally:
            if started_ray:
                ray.shutdown()
    result = {
        "model": {"path": str(model), "sha256": model_sha}, "data": {"name": data, "test_samples": int(len(shared.inputs.x))},
        "timesteps": list(base.timesteps), "max_loss": max_loss, "ann_accuracy": ann_accuracy,
        "versions": versions(), "rows": [rows[c] for c in chosen],
    }
    result["recommendations"] = recommendations(result["rows"], ann_accuracy, max_loss)
    echo(f"{len(todo)} configurations run, {len(cached)} cached, in {time.monotonic() - started:.1f} s")
    for entry in result["recommendations"]:
        echo(entry["sentence"])
    if folder is not None:
        write_whole(folder / "sweep.json", json.dumps(result, indent=2) + "\n")
        write_whole(folder / "sweep.md", markdown(result))
        write_whole(folder / "sweep.html", html(result))
        echo(f"wrote {folder}/sweep.json, {folder}/sweep.md, {folder}/sweep.html")
    return result


def _run_on_ray(ray, todo: list[Configuration], base: CompileOptions, shared: Shared, shard_size: int | None):
    """(configuration, its merged target entries, {check: passed on every shard}) as its last shard finishes."""
    build = ray.remote(max_retries=RETRIES, num_cpus=1)(build_configuration)
    evaluate = ray.remote(max_retries=RETRIES, num_cpus=1)(evaluate_shard)
    shared_ref = ray.put(shared)
    bounds = shard_bounds(len(shared.inputs.x), shard_size)
    waiting, shards = {}, {}
    for configuration in todo:
        networks = build.remote(configuration, base, shared_ref)
        refs = [evaluate.remote(configuration, base, networks, shared_ref, start, stop) for start, stop in bounds]
        shards[configuration] = {ref: None for ref in refs}
        waiting.update({ref: configuration for ref in refs})
    while waiting:
        done, _ = ray.wait(list(waiting), num_returns=1)
        for ref in done:
            configuration = waiting.pop(ref)
            try:
                shards[configuration][ref] = ray.get(ref)
            except ray.exceptions.RayTaskError as err:  # a user error in a task: one line, as from a compile
                if isinstance(err.cause, SnncError):
                    raise SnncError(f"configuration {configuration.label}: {err.cause}") from None
                raise
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as err:
                raise SnncError(f"configuration {configuration.label}: its worker died {RETRIES + 1} times "
                                f"({type(err).__name__}); finished configurations are cached: run the sweep again to "
                                "resume, with fewer CPUs or a smaller --shard-size if memory ran out") from None
            if all(entry is not None for entry in shards[configuration].values()):
                finished = list(shards.pop(configuration).values())
                checks = {}
                for check in (check for shard in finished for check in shard["checks"]):
                    checks[check["name"]] = checks.get(check["name"], True) and check["passed"]
                yield configuration, merge_shards([shard["targets"] for shard in finished]), checks
