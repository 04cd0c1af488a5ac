"""The `if` neuron: invariant Q1 of methods.md §1.3 as property tests, and the runtime against the numpy spec."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.reference import ReferenceRuntime
from targets.reference.neurons import Signal, soft_reset
from toolchain.neurons import if_neuron, qcfs, simulate

thresholds = st.floats(0.0625, 16.0, allow_nan=False, width=32)
steps = st.integers(1, 64)


@settings(max_examples=200, deadline=None)
@given(threshold=thresholds, timesteps=steps, value=st.floats(-50.0, 50.0, allow_nan=False, width=32))
def test_q1_constant_input_mean_equals_qcfs_with_t_levels(threshold, timesteps, value):
    params = if_neuron.parameters(threshold)
    x = np.full((timesteps, 1), value, np.float64)
    mean_output = simulate(x, params).mean(0) * params.unit_threshold
    expected = qcfs(np.float64(value), np.float64(params.unit_threshold), timesteps)
    # Exact up to the rounding of an input sitting on a step edge.
    assert np.isclose(mean_output[0], expected, atol=1e-9) or on_rounding_edge(value, threshold, timesteps)


@settings(max_examples=200, deadline=None)
@given(threshold=thresholds, timesteps=steps, data=st.data())
def test_q1_bounded_time_varying_input(threshold, timesteps, data):
    fractions = data.draw(st.lists(st.floats(0, 1), min_size=timesteps, max_size=timesteps))
    x = np.array(fractions, np.float64)[:, None] * np.float64(threshold)
    params = if_neuron.parameters(threshold)
    mean_output = simulate(x, params).mean(0)[0] * np.float64(params.unit_threshold)
    expected = qcfs(x.mean(), np.float64(threshold), timesteps)
    assert np.isclose(mean_output, expected, atol=1e-9) or on_rounding_edge(x.mean(), threshold, timesteps)


def on_rounding_edge(value, threshold, levels) -> bool:
    """Whether QCFS's rounding of `value` sits on a half step, where float error may round either way."""
    position = value * levels / threshold + 0.5
    return abs(position - round(position)) < 1e-6


def test_without_the_bound_q1_can_fail():
    """The unevenness error: a time-varying input outside [0, λ] is not QCFS of its mean."""
    params = if_neuron.parameters(1.0)
    x = np.array([[2.0], [-2.0], [0.0], [0.0]])
    assert simulate(x, params).mean() * 1.0 != qcfs(x.mean(), 1.0, 4)


def test_runtime_kernel_matches_the_numpy_spec_bit_for_bit():
    rng = np.random.default_rng(0)
    threshold = rng.uniform(0.2, 2.0, (3, 5)).astype(np.float32)
    x = rng.normal(0.3, 1.0, (40, 8, 3, 5)).astype(np.float32)
    params = if_neuron.parameters(threshold)
    spec = simulate(x, params)
    kernel_params = {
        "threshold": torch.from_numpy(threshold), "v_init": torch.from_numpy(np.array(params.v_init)),
        "r": torch.ones(3, 5), "unit_r": True, "subtract": True, "max_spikes": 1,
    }
    ours = soft_reset(kernel_params, Signal(torch.from_numpy(x), temporal=True), 40).numpy()
    np.testing.assert_array_equal(ours, spec)


def test_runtime_kernel_on_channels_last_images_matches_the_spec():
    # the runtime keeps image signals channels-last; per-neuron parameters are laid out to match
    from targets.reference.neurons import per_neuron_layout as _per_neuron_layout, steps_like as _steps_like
    from toolchain.ir.kernels import channels_last

    rng = np.random.default_rng(1)
    steps, batch, shape = 12, 5, (4, 3, 6)
    threshold = rng.uniform(0.2, 2.0, shape).astype(np.float32)
    x = rng.normal(0.3, 1.0, (steps, batch, *shape)).astype(np.float32)
    params = if_neuron.parameters(threshold)
    layout = _steps_like(channels_last(torch.zeros(batch, *shape)), steps)
    layout.copy_(torch.from_numpy(x))
    assert layout[0].is_contiguous(memory_format=torch.channels_last)
    kernel_params = {
        "threshold": _per_neuron_layout(torch.from_numpy(threshold)),
        "v_init": _per_neuron_layout(torch.from_numpy(np.ascontiguousarray(np.broadcast_to(params.v_init, shape)))),
        "r": torch.ones(shape), "unit_r": True, "subtract": True, "max_spikes": 1,
    }
    ours = soft_reset(kernel_params, Signal(layout, temporal=True), steps)
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(ours.numpy(), simulate(x, params))


def test_a_batch_too_large_for_the_memory_bound_runs_in_parts_with_the_same_result(zoo):
    from toolchain.data import fit_to_input, load_dataset
    from toolchain.frontend import import_onnx
    from toolchain.passes import canonicalise, lower_to_nir

    graph = canonicalise(import_onnx(zoo / "digits_cnn_qcfs8.onnx"))
    runtime = ReferenceRuntime(lower_to_nir(graph, "if"))
    x = fit_to_input(load_dataset("digits").x_test[:300], graph.input_shape, "digits")
    steps = 64
    assert runtime.batch_size_for(steps) < len(x)
    whole, small = runtime.run(x, steps, batch_size=len(x)), runtime.run(x, steps, batch_size=7)
    np.testing.assert_array_equal(whole.predictions, small.predictions)
    np.testing.assert_array_equal(whole.readout, small.readout)
    assert whole.spikes == small.spikes
