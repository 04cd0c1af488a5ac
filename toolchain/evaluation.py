"""Running compiled networks on the targets and turning the runs into report entries.

Causal networks (soft-reset neurons) answer at every step, so one run at the largest T gives every prefix.
Windowed neurons (two-phase, permuted) need their whole window before firing, so T is part of the neuron, and
calibration may compile a network per T: then one run per T, each on the network compiled for that T. Every target and `snnc run` go through `runs_per_timestep`.
"""

from __future__ import annotations

import nir
import numpy as np

from targets import get_target
from targets.interface import Target
from toolchain.costs import energy_report, resource_report, structure_of
from toolchain.chips import load_chips
from toolchain.ir.schedule import latency_steps, windowed_layers
from toolchain.options import CompileOptions
from toolchain.passes import expand_group_neurons
from toolchain.report import compare_runs, operations_entry, target_entry

MERGED_PER_T = ("accuracy", "agreement_with_ann", "spikes_per_inference", "synops_per_inference")


def runs_per_timestep(target: Target, networks: dict[int, nir.NIRGraph], x: np.ndarray, options: CompileOptions,
                      count_operations: bool = True) -> list[tuple[list[int], object]]:
    """[(the T's a run answers for, its RunResult)]: one run for a causal network shared by every T, else one per T
    (windowed neurons, or networks calibrated per T)."""
    steps = list(options.timesteps)
    largest = networks[max(steps)]
    settings, threads, batch = options.target_options, options.threads, options.batch_size
    shared = all(networks[t] is largest for t in steps)
    if shared and not windowed_layers(largest):
        counted = tuple(steps) if count_operations else ()
        return [(steps, target.run(largest, x, max(steps), settings, threads, batch, counted))]
    return [([t], target.run(networks[t], x, t, settings, threads, batch, (t,) if count_operations else ()))
            for t in steps]


def target_report(runs, networks: dict[int, nir.NIRGraph], y: np.ndarray, ann_predictions: np.ndarray,
                  macs: dict[str, int]) -> dict:
    """One report entry from a target's runs: accuracy, agreement and spikes per T, operation counts where the
    target counted them, and the latency on a streaming chip."""
    entries = []
    for steps, result in runs:
        entry = target_entry(result, y, steps, ann_predictions)
        if result.counted_steps:
            entry.update(operations_entry(structure_of(networks[max(steps)]), result, macs))
        entry.update(result.details)
        entries.append(entry)
    merged = entries[-1]
    for key in MERGED_PER_T:
        if key in merged:
            merged[key] = {k: v for e in entries for k, v in e[key].items()}
    merged["latency_steps"] = {str(t): latency_steps(networks[t], t) for steps, _ in runs for t in steps}
    return merged


def evaluate_targets(networks: dict[int, dict[str, nir.NIRGraph]], x: np.ndarray, y: np.ndarray,
                     ann_predictions: np.ndarray, options: CompileOptions) -> dict:
    """Every requested target's entry and check, the full-set reference beside targets that run a few samples (at
    their precision), energy and chip resources. `networks[T][precision]` as the pipeline built them."""
    largest = max(options.timesteps)
    macs = structure_of(networks[largest]["float"]).macs  # the ANN's MACs per layer, from the float network
    reference = get_target("reference")
    report = {"targets": {}, "checks": []}

    def full_set(precision: str, name: str) -> None:
        if name not in report["targets"]:
            nets = {t: networks[t][precision] for t in options.timesteps}
            report["targets"][name] = {**target_report(runs_per_timestep(reference, nets, x, options), nets, y, ann_predictions, macs),
                                       "precision": precision}

    running = [t for t in options.target_list() if t.precision(options.target_options) is not None]
    if running:  # the reference's full-set figures come first, at the reference's precision
        full_set(reference.precision(options.target_options), "reference")
    for target in running:
        if target is reference:
            continue
        precision = target.precision(options.target_options)
        full_set(precision, "reference" if precision == reference.precision(options.target_options) else f"reference-{precision}")
        count = target.samples(options.target_options, len(x))
        nets = {t: networks[t][precision] for t in options.timesteps}
        runs = runs_per_timestep(target, nets, x[:count], options, count_operations=False)
        report["targets"][target.name] = {**target_report(runs, nets, y[:count], ann_predictions[:count], macs), "precision": precision}
        exact = target.exact(options.target_options)
        if exact is not None:  # the same samples on the reference at the same precision, in the target's arithmetic
            in_arithmetic = {t: target.reference_graph(n) for t, n in nets.items()}
            checked = runs_per_timestep(reference, in_arithmetic, x[:count], options, count_operations=target.simulates_energy)
            report["checks"].append(compare_runs(target.name, runs[-1][1], checked[-1][1], exact))
            if target.simulates_energy:  # snnc's estimate for exactly the spikes the simulator fired
                counted = target_report(checked, in_arithmetic, y[:count], ann_predictions[:count], macs)
                report["targets"][target.name].update(target.compare_energy(
                    report["targets"][target.name], energy_report(counted, load_chips()), largest))
    if "reference" in report["targets"]:
        report["energy"] = energy_report(report["targets"]["reference"], load_chips())
    float_network = networks[largest]["float"]
    # Graded-spike chips run the network as compiled; binary ones run group neurons as their binary members.
    report["resources"] = resource_report(load_chips(), float_network, expand_group_neurons(float_network))
    return report
