"""Group neurons: invariants G1–G3 (methods.md §3.4), the runtime against the spec, and the exact expansion."""

import nir
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.reference import ReferenceRuntime
from targets.reference.neurons import Signal, soft_reset
from tests.test_neuron_if import on_rounding_edge
from toolchain.neurons import gn, if_neuron, qcfs, simulate
from toolchain.passes import expand_group_neurons
from toolchain.ir.metadata import KEY

taus = st.integers(1, 8)
steps = st.integers(1, 32)
thresholds = st.floats(0.0625, 16.0, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(threshold=thresholds, timesteps=steps, data=st.data())
def test_g1_tau_one_is_the_if_neuron_step_for_step(threshold, timesteps, data):
    x = np.array(data.draw(st.lists(st.floats(-40, 40, width=32), min_size=timesteps, max_size=timesteps)), np.float32)[:, None]
    np.testing.assert_array_equal(simulate(x, gn.parameters(threshold, tau=1)), simulate(x, if_neuron.parameters(threshold)))


@settings(max_examples=150, deadline=None)
@given(threshold=thresholds, tau=taus, timesteps=steps, data=st.data())
def test_g2_at_most_tau_spikes_per_step(threshold, tau, timesteps, data):
    x = np.array(data.draw(st.lists(st.floats(-100, 100, width=32), min_size=timesteps, max_size=timesteps)), np.float32)[:, None]
    counts = simulate(x, gn.parameters(threshold, tau))
    assert np.all((counts >= 0) & (counts <= tau) & (counts == np.round(counts)))


@settings(max_examples=200, deadline=None)
@given(threshold=thresholds, tau=taus, timesteps=steps, data=st.data())
def test_g3_bounded_input_mean_equals_qcfs_with_tau_times_t_levels(threshold, tau, timesteps, data):
    fractions = data.draw(st.lists(st.floats(0, 1), min_size=timesteps, max_size=timesteps))
    x = np.array(fractions, np.float64)[:, None] * np.float64(threshold)
    params = gn.parameters(threshold, tau)
    mean_output = simulate(x, params).mean(0)[0] * np.float64(params.unit_threshold)
    expected = qcfs(x.mean(), np.float64(threshold), tau * timesteps)
    assert np.isclose(mean_output, expected, atol=1e-9) or on_rounding_edge(x.mean(), threshold, tau * timesteps)


def test_runtime_graded_kernel_matches_the_spec_bit_for_bit():
    rng = np.random.default_rng(1)
    threshold = rng.uniform(0.5, 3.0, (4, 3)).astype(np.float32)
    x = rng.normal(0.5, 2.0, (30, 6, 4, 3)).astype(np.float32)
    params = gn.parameters(threshold, tau=5)
    kernel_params = {
        "threshold": torch.from_numpy(np.array(params.unit_threshold)), "v_init": torch.from_numpy(np.array(params.v_init)),
        "r": torch.ones(4, 3), "unit_r": True, "subtract": True, "max_spikes": 5,
    }
    ours = soft_reset(kernel_params, Signal(torch.from_numpy(x), temporal=True), 30).numpy()
    np.testing.assert_array_equal(ours, simulate(x, params))


def _one_group_graph(threshold: float, tau: int, size: int) -> nir.NIRGraph:
    params = gn.parameters(np.full(size, threshold, np.float32), tau)
    meta = {KEY: {"neuron": "gn", "reset": "subtract", "max_spikes_per_step": tau, "v_init": np.array(params.v_init),
                  "threshold": np.array([threshold], np.float32), "activation": "qcfs", "levels": 8}}
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([size])}),
            "fc": nir.Affine(weight=np.eye(size, dtype=np.float32), bias=np.zeros(size, np.float32)),
            "gn1": nir.IF(r=np.ones(size, np.float32), v_threshold=np.array(params.unit_threshold), v_reset=np.zeros(size, np.float32), metadata=meta),
            "readout": nir.I(r=np.ones(size, np.float32)),
            "output": nir.Output(output_type={"output": np.array([size])}),
        },
        edges=[("input", "fc"), ("fc", "gn1"), ("gn1", "readout"), ("readout", "output")], type_check=False,
    )


@settings(max_examples=60, deadline=None)
@given(tau=st.sampled_from([1, 2, 4, 8]), exponent=st.integers(-2, 3), data=st.data())
def test_expansion_equals_compact_for_any_input_when_arithmetic_is_exact(tau, exponent, data):
    """methods.md §3.6: exact for every input (negative, above λ, time-varying). With λ a power of two and inputs
    on a 2^-10 grid every sum is exact in float32, so the two forms must agree spike for spike."""
    threshold, size, timesteps = float(2.0 ** exponent), 6, 12
    grid = data.draw(st.lists(st.integers(-4096, 4096), min_size=size, max_size=size))
    x = (np.array(grid, np.float32) / 1024.0)[None, :]  # constant over time: drives fc → gn every step
    compact = _one_group_graph(threshold, tau, size)
    expanded = expand_group_neurons(compact)
    assert sum(isinstance(n, nir.IF) for n in expanded.nodes.values()) == tau
    a, b = ReferenceRuntime(compact).run(x, timesteps), ReferenceRuntime(expanded).run(x, timesteps)
    np.testing.assert_array_equal(a.readout, b.readout)
    assert a.spikes == b.spikes and b.neurons["gn1"] == tau * size


def test_expansion_with_unrounded_float_inputs_differs_at_most_by_rounding():
    """Arbitrary float32 inputs: the forms add in different orders, so only rare rounding ties may differ."""
    rng = np.random.default_rng(2)
    size, tau = 64, 4
    first = _one_group_graph(1.0, tau, size)
    x = rng.uniform(-0.5, 2.0, (200, size)).astype(np.float32)
    a, b = ReferenceRuntime(first).run(x, 16), ReferenceRuntime(expand_group_neurons(first)).run(x, 16)
    assert abs(a.spikes["gn1"] - b.spikes["gn1"]) <= 1e-4 * a.spikes["gn1"]
