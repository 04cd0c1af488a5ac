"""Windowed neurons: parallel (P1–P3, P5 of methods.md §6.4), the TPP and BSNN reconstructions' stated
properties, TPP's permutation baseline, and the reference runtime against the numpy specification."""

import math

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.reference import ReferenceRuntime
from toolchain.ir.evaluate import evaluate_ann
from targets.reference.neurons import Signal, neuron_parameters, permuted_window, two_phase_window
from toolchain.data import fit_to_input, load_dataset
from toolchain.frontend import import_onnx
from toolchain.graph import Activation, AnnGraph, Node
from toolchain.neurons import if_neuron, parallel, permuted as if_permuted, qcfs, two_phase
from toolchain.neurons import simulate as simulate_if
from toolchain.passes import canonicalise, lower_to_nir

thresholds = st.floats(0.0625, 16.0, allow_nan=False, width=32)


def _sequence(data, steps, low=-20.0, high=20.0):
    return np.array(data.draw(st.lists(st.floats(low, high, width=32), min_size=steps, max_size=steps)), np.float64)[:, None]


@settings(max_examples=200, deadline=None)
@given(threshold=thresholds, steps=st.integers(1, 32), data=st.data())
def test_p1_p2_parallel_mean_is_qcfs_of_mean_input_for_any_sequence(threshold, steps, data):
    x = _sequence(data, steps)
    spikes = two_phase.simulate(x, threshold, threshold / 2, "deterministic", steps)
    expected = qcfs(x.mean(), np.float64(threshold), steps)
    position = x.mean() * steps / threshold + 0.5
    if abs(position - round(position)) > 1e-9:  # P1 holds up to float ties at S + θ/2 = tθ
        assert np.isclose(spikes.mean() * threshold, expected)
    n = int(spikes.sum())
    assert np.array_equal(spikes[:, 0], np.arange(steps) < n)  # P2: one block at the start
    assert n == parallel.spike_count(x.sum(), np.float64(threshold), steps)


def test_p5_other_level_counts_are_unbiased_for_uniform_inputs():
    x = np.random.default_rng(0).uniform(0, 1, 2_000_000)
    for steps, levels in ((4, 8), (8, 16), (2, 4), (3, 8)):
        assert abs((qcfs(x, 1.0, steps) - qcfs(x, 1.0, levels)).mean()) < 1e-3


@pytest.mark.parametrize("model_name,data", [("digits_cnn_qcfs8", "digits"), ("mnist5k_cnn_qcfs4", "mnist5k")])
def test_p3_parallel_network_with_t_equal_l_predicts_exactly_what_the_qcfs_ann_predicts(zoo, model_name, data):
    graph = canonicalise(import_onnx(zoo / f"{model_name}.onnx"))
    levels = {n.op.levels for n in graph.nodes.values() if isinstance(n.op, Activation)}
    assert len(levels) == 1
    dataset = load_dataset(data)
    x = fit_to_input(dataset.x_test[:500], graph.input_shape, data)
    result = ReferenceRuntime(lower_to_nir(graph, "parallel")).run(x, levels.pop())
    logits = evaluate_ann(graph, x)
    np.testing.assert_allclose(result.readout / result.timesteps, logits, rtol=1e-4, atol=1e-4)
    assert np.array_equal(result.predictions[-1], logits.argmax(1))


def _tpp_counts(v, threshold, steps, u):
    spikes, left = two_phase.bernoulli_window(v, threshold, steps, u)
    return spikes.sum(0), spikes, left


@settings(max_examples=8, deadline=None)
@given(threshold=thresholds, steps=st.sampled_from([1, 2, 4, 8]), seed=st.integers(0, 2**16))
def test_tpp_mean_count_is_the_clipped_input_in_thresholds(threshold, steps, seed):
    """Unbiased: over 10⁵ draws the mean count is clip(v/θ, 0, T) within 0.01 (over 6 standard errors: the
    count varies only by its random rounding, standard deviation ≤ 1/2) for v on a grid of eighths of θ."""
    rng = np.random.default_rng(seed)
    draws = 100_000
    for k in range(-8, 8 * steps + 9):
        v = np.full(draws, k / 8 * threshold, np.float64)
        counts, _, _ = _tpp_counts(v, np.float64(threshold), steps, rng.random((steps + 1, draws)))
        assert abs(counts.mean() - np.clip(k / 8, 0, steps)) < 0.01, (k, counts.mean())


@settings(max_examples=100, deadline=None)
@given(threshold=thresholds, steps=st.integers(1, 16), fraction=st.floats(-1e6, 0), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_tpp_never_fires_without_positive_input(threshold, steps, fraction, seed, dtype):
    u = two_phase.bernoulli_draws(seed, "layer", 0, steps, steps, (3,))
    v = np.array([0.0, -0.0, fraction * threshold], dtype)
    counts, _, left = _tpp_counts(v, dtype(threshold), steps, u)
    assert not counts.any()
    np.testing.assert_array_equal(left, v)


@settings(max_examples=100, deadline=None)
@given(threshold=thresholds, steps=st.integers(1, 16), fraction=st.floats(-1, 20), seed=st.integers(0, 1000))
def test_tpp_count_is_the_potential_rounded_down_or_up_and_the_rest_stays(threshold, steps, fraction, seed):
    u = two_phase.bernoulli_draws(seed, "layer", 0, steps, steps, (1,))
    v = np.array([fraction * threshold], np.float64)
    counts, _, left = _tpp_counts(v, np.float64(threshold), steps, u)
    target = np.clip(fraction, 0, steps)
    assert np.floor(target) - 1e-9 <= counts[0] <= np.ceil(target) + 1e-9
    np.testing.assert_array_equal(left, v - counts * np.float64(threshold))


def test_tpp_without_input_never_fires_in_a_lowered_layer_and_one_threshold_gives_one_spike():
    """The model's declaration: v_init = 0 (θ/2 would add half a spike to every expected count)."""
    threshold = np.float32(0.75)
    graph = lower_to_nir(AnnGraph(source="test", input_name="x", input_shape=(1000,), output="act",
                                  nodes={"act": Node("act", Activation("clip", threshold=threshold), ["x"], (1000,))}), "tpp")
    name, node = next((n, node) for n, node in graph.nodes.items() if isinstance(node, nir.IF))
    params = neuron_parameters(node, name)
    steps = 4
    for per_step, expected in ((0.0, 0.0), (-0.1, 0.0), (threshold / steps, 1.0)):
        x = torch.full((steps, 8, 1000), per_step, dtype=torch.float32)
        spikes = two_phase_window(params, Signal(x, temporal=True), steps)
        np.testing.assert_array_equal(spikes.sum(0).numpy(), np.full((8, 1000), expected, np.float32))


@pytest.mark.parametrize("steps", [2, 3, 4, 5])
def test_tpp_spikes_are_a_uniformly_random_subset_of_the_window(steps):
    """Given its count n, every one of the C(T, n) sets of steps is equally likely (χ² test), also when n came
    from rounding a fractional v/θ (v = (n + 1/2)·θ: n or n + 1 spikes)."""
    rng = np.random.default_rng(steps)
    trials = 40_000
    for half_steps in range(0, 2 * steps + 1):
        v = np.full(trials, half_steps / 2)
        counts, spikes, _ = _tpp_counts(v, np.float64(1.0), steps, rng.random((steps + 1, trials)))
        for n in np.unique(counts):
            chosen = spikes[:, counts == n]
            assert np.all(chosen.sum(0) == n)
            np.testing.assert_allclose(chosen.mean(1), n / steps, atol=0.03)  # each step fires in n/T of them
            subsets = (chosen * (2 ** np.arange(steps))[:, None]).sum(0).astype(int)
            frequencies = np.bincount(subsets, minlength=2**steps)[[s for s in range(2**steps) if bin(s).count("1") == n]]
            assert len(frequencies) == math.comb(steps, int(n)) and frequencies.min() > 0
            expected = chosen.shape[1] / len(frequencies)
            chi_square, freedom = ((frequencies - expected) ** 2 / expected).sum(), len(frequencies) - 1
            assert chi_square < freedom + 8 * np.sqrt(2 * freedom) + 10  # far in the tail (p < 1e-5) for these dofs


def test_random_draws_are_uniform_and_differ_per_stream():
    u = two_phase.uniforms(3, "conv1", 0, 50, (40, 50))
    assert u.min() >= 0 and u.max() < 1
    observed = np.histogram(u, bins=20, range=(0, 1))[0]
    expected = u.size / 20
    assert ((observed - expected) ** 2 / expected).sum() < 50  # χ² with 19 degrees of freedom: p < 1e-4 above 50
    # 100,000 independent pairs correlate by 0 ± 0.003; 0.02 is over 6 standard deviations
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.02  # consecutive steps
    others = [two_phase.uniforms(4, "conv1", 0, 50, (40, 50)), two_phase.uniforms(3, "conv2", 0, 50, (40, 50)),
              two_phase.uniforms(3, "conv1", 1, 50, (40, 50))]
    for other in others:
        assert abs(np.corrcoef(u.ravel(), other.ravel())[0, 1]) < 0.02


def test_random_draws_of_a_window_prefix_are_the_windows_first_steps():
    """Counter-based: step t's numbers do not depend on how many steps are drawn."""
    whole = two_phase.uniforms(0, "layer", 9, 8, (2, 3))
    np.testing.assert_array_equal(two_phase.uniforms(0, "layer", 9, 3, (2, 3)), whole[:3])


@settings(max_examples=100, deadline=None)
@given(threshold=thresholds, cycles=st.integers(1, 6), cycle=st.integers(1, 6), fraction=st.floats(0, 1), data=st.data())
def test_bsnn_counts_match_qcfs_for_bounded_constant_input(threshold, cycles, cycle, fraction, data):
    """Within each cycle the remainder stays below θ, so over T = cycles·c steps the count is QCFS_T's."""
    steps = cycles * cycle
    value = fraction * threshold * (cycle - 0.5) / cycle  # keeps remainder + one cycle's input within c spikes
    x = np.full((steps, 1), value, np.float64)
    spikes = two_phase.simulate(x, threshold, threshold / 2, "deterministic", cycle)
    position = value * steps / threshold + 0.5
    if abs(position - round(position)) > 1e-9:
        assert np.isclose(spikes.mean() * threshold, qcfs(np.float64(value), np.float64(threshold), steps))


def test_bsnn_with_one_cycle_per_window_is_the_parallel_neuron():
    x = np.random.default_rng(1).normal(0.3, 1, (8, 50))
    bsnn_as_parallel = two_phase.simulate(x, 1.0, 0.5, "deterministic", cycle=8)
    assert np.array_equal(bsnn_as_parallel.sum(0), parallel.spike_count(x.sum(0), 1.0, 8))
    assert np.array_equal(bsnn_as_parallel[:, 0], np.arange(8) < bsnn_as_parallel[:, 0].sum())


@pytest.mark.parametrize("layout,dtype", [("flat", np.float32), ("channels_last", np.float32), ("channels_last", np.float64)])
@pytest.mark.parametrize("rule,cycle", [("deterministic", 0), ("deterministic", 3), ("bernoulli", 0), ("bernoulli", 2)])
@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "torch"])
def test_runtime_kernel_matches_the_spec(rule, cycle, layout, dtype, compiled):
    """Both kernels: numba's (the CPU's) and torch's (a GPU's, here run on the CPU)."""
    from toolchain.ir.kernels import channels_last

    rng = np.random.default_rng(2)
    steps, batch, shape = 12, 5, (3, 4) if layout == "flat" else (3, 4, 2)
    threshold = rng.uniform(0.5, 2, shape).astype(dtype)
    x = rng.normal(0.4, 1, (steps, batch, *shape)).astype(dtype)
    params = {"threshold": channels_last(torch.from_numpy(threshold)[None])[0], "v_init": torch.from_numpy(threshold / 2),
              "rule": rule, "cycle": cycle, "seed": 7, "layer": "layer1", "compiled_kernels": compiled}
    signal = Signal(channels_last(torch.from_numpy(x).reshape(-1, *shape)).view(steps, batch, *shape), temporal=True)
    ours = two_phase_window(params, signal, steps, first_sample=10).numpy()
    for b in range(batch):
        u = two_phase.bernoulli_draws(7, "layer1", 10 + b, steps, cycle or steps, shape)
        spec = two_phase.simulate(x[:, b], threshold, threshold / 2, rule, cycle or steps, u)
        np.testing.assert_array_equal(ours[:, b], spec)


@settings(max_examples=40, deadline=None)
@given(steps=st.integers(1, 12), batch=st.integers(1, 4), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16), first_sample=st.integers(0, 1000), compiled=st.booleans())
def test_bernoulli_kernels_are_the_spec_bit_for_bit(steps, batch, dtype, seed, first_sample, compiled):
    """Counts, spike positions and the potential left, on potentials at eighths of θ (exact counts, halves) and
    anywhere from below 0 to beyond T·θ; the compiled kernel (numba) and the torch one (a GPU's, here on the CPU)."""
    from targets.reference.kernels import bernoulli_fire

    rng = np.random.default_rng(seed)
    shape = (4, 5, 3)
    threshold = rng.uniform(0.1, 2, shape).astype(dtype)
    on_grid = rng.integers(-8, 8 * steps + 9, (batch, *shape)) / 8
    anywhere = rng.uniform(-1, steps + 1, (batch, *shape))
    v = (np.where(rng.random((batch, *shape)) < 0.5, on_grid, anywhere) * threshold).astype(dtype)
    state, spikes = torch.from_numpy(v.copy()), torch.empty((steps, batch, *shape), dtype=torch.from_numpy(v).dtype)
    keys = np.array([two_phase.stream_key(seed, "l", first_sample + b) for b in range(batch)], np.uint64)
    bernoulli_fire(state, torch.from_numpy(threshold), keys, 0, spikes, compiled=compiled)
    for b in range(batch):
        u = two_phase.bernoulli_draws(seed, "l", first_sample + b, steps, steps, shape)
        expected, left = two_phase.bernoulli_window(v[b], threshold, steps, u)
        np.testing.assert_array_equal(spikes[:, b].numpy(), expected)
        np.testing.assert_array_equal(state[b].numpy(), left)


def test_bernoulli_draws_give_each_cycle_its_own_rows():
    """c + 1 rows per cycle (a rounding draw and one per step), consecutive, covering the window's draws once."""
    steps, cycle = 12, 3
    draws = two_phase.bernoulli_draws(1, "layer", 2, steps, cycle, (2,))
    assert len(draws) == steps // cycle * (cycle + 1)
    rows = [two_phase.cycle_rows(start, cycle) for start in range(0, steps, cycle)]
    np.testing.assert_array_equal(np.concatenate([draws[r] for r in rows]), draws)
    np.testing.assert_array_equal(two_phase.bernoulli_draws(1, "layer", 2, steps, steps, (2,)),
                                  two_phase.uniforms(1, "layer", 2, steps + 1, (2,)))


def test_tpp_is_reproducible_per_seed(zoo):
    graph = canonicalise(import_onnx(zoo / "digits_cnn_qcfs8.onnx"))
    x = fit_to_input(load_dataset("digits").x_test[:40], graph.input_shape, "digits")
    run = lambda seed: ReferenceRuntime(lower_to_nir(graph, "tpp", {"seed": seed})).run(x, 8, batch_size=16)
    first, again, other = run(1), run(1), run(2)
    assert first.spikes == again.spikes and np.array_equal(first.readout, again.readout)
    assert first.spikes != other.spikes


def test_if_permuted_keeps_each_neurons_if_count_and_scrambles_the_timing():
    rng = np.random.default_rng(4)
    steps, shape = 16, (40,)
    x = rng.uniform(-0.2, 1.2, (steps, *shape)).astype(np.float32)
    params = if_neuron.parameters(np.full(shape, 1.0, np.float32))
    order = if_permuted.permutation(3, "layer", 0, steps, shape)
    assert np.array_equal(np.sort(order, axis=0), np.broadcast_to(np.arange(steps)[:, None], order.shape))
    permuted, plain = if_permuted.simulate(x, params, order), simulate_if(x, params)
    np.testing.assert_array_equal(permuted.sum(0), plain.sum(0))
    assert not np.array_equal(permuted, plain)


def test_runtime_permuted_kernel_matches_the_spec():
    rng = np.random.default_rng(6)
    steps, batch, shape = 10, 4, (2, 3)
    threshold = rng.uniform(0.5, 2, shape).astype(np.float32)
    x = rng.normal(0.4, 1, (steps, batch, *shape)).astype(np.float32)
    params = {"threshold": torch.from_numpy(threshold), "v_init": torch.from_numpy(threshold / 2), "r": torch.ones(shape),
              "unit_r": True, "subtract": True, "max_spikes": 1, "seed": 9, "layer": "l"}
    ours = permuted_window(params, Signal(torch.from_numpy(x), temporal=True), steps, first_sample=3).numpy()
    for b in range(batch):
        order = if_permuted.permutation(9, "l", 3 + b, steps, shape)
        np.testing.assert_array_equal(ours[:, b], if_permuted.simulate(x[:, b], if_neuron.parameters(threshold), order))


@pytest.mark.parametrize("model_name,data", [("digits_cnn_qcfs8", "digits"), ("digits_mlp_relu", "digits")])
def test_window_sum_path_equals_the_step_by_step_path(zoo, model_name, data):
    graph = canonicalise(import_onnx(zoo / f"{model_name}.onnx"))
    for node in graph.nodes.values():  # plain ReLU layers get a threshold so they can be lowered
        if isinstance(node.op, Activation) and node.op.threshold is None:
            node.op.threshold = 1.0
    runtime = ReferenceRuntime(lower_to_nir(graph, "parallel"))
    x = torch.from_numpy(fit_to_input(load_dataset(data).x_test[:32], graph.input_shape, data))
    steps = 6
    assert runtime.runs_on_window_sums(steps)
    fast_totals, slow_totals = {}, {}
    with torch.inference_mode():
        fast, fast_counts = runtime._run_window_sums(x, steps, steps=(2, 6), neuron_totals=fast_totals)
        slow, slow_counts = runtime._run_batch(x, steps, steps=(2, 6), neuron_totals=slow_totals)
    np.testing.assert_allclose(fast[-1].numpy(), slow[-1].numpy(), rtol=1e-5, atol=1e-4)
    for name in slow_counts:
        np.testing.assert_array_equal(fast_counts[name], slow_counts[name])
        np.testing.assert_array_equal(fast_totals[runtime.layer_of[name]][0], slow_totals[runtime.layer_of[name]][0])


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(1, 40), scale_by_steps=st.booleans(), layout=st.sampled_from(["flat", "nchw", "channels_last"]),
       seed=st.integers(0, 2**16), compiled=st.booleans())
def test_window_kernels_are_the_spec_bit_for_bit(steps, scale_by_steps, layout, seed, compiled):
    """The compiled kernel (numba) and the torch one (a GPU's, here on the CPU)."""
    from targets.reference.kernels import window_spikes
    from toolchain.ir.kernels import channels_last

    rng = np.random.default_rng(seed)
    shape = (5, 7) if layout == "flat" else (6, 3, 4, 5)
    sums = rng.normal(0, 3, shape).astype(np.float32)
    threshold = rng.uniform(0.1, 2, shape[1:]).astype(np.float32)
    v_init = (threshold / 2).astype(np.float32)
    scale = steps if scale_by_steps else 1
    tensor = torch.from_numpy(sums)
    tensor = channels_last(tensor) if layout == "channels_last" else tensor
    counts, histogram = window_spikes(tensor, scale, torch.from_numpy(v_init), torch.from_numpy(threshold), steps,
                                     compiled=compiled)
    # the spec's order of operations: v = v_init + S (S = T·x for a constant input), n = clamp(floor(v/θ), 0, T)
    expected = np.clip(np.floor((v_init + sums * np.float32(scale)) / threshold), 0, steps).astype(np.float32)
    np.testing.assert_array_equal(counts.numpy(), expected)
    assert counts.stride() == tensor.stride()
    np.testing.assert_array_equal(histogram, np.bincount(expected.astype(int).ravel(), minlength=steps + 1))
