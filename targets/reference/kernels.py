"""Compiled loops for the reference runtime where torch needs several passes over memory for one.

`bernoulli_fire` is the fire phase of `tpp` (toolchain/neurons/two_phase.py, `bernoulli_window`): each neuron's
random numbers (a rounding draw, then one per step while it has spikes left to place) are computed where they
are used, from the counter-based generator of the spec, instead of drawn sample by sample in Python and stacked
(which cost 4–6× the network's dense floor).

`window_spikes` is the parallel neuron on window sums (toolchain/neurons/parallel.py): the spike count
n = clamp(floor((S·scale + v_init)/θ), 0, T) of every neuron and how many neurons took each count, in one pass.
In torch that is four elementwise passes plus a single-threaded bincount, twice the time of the layer's
convolution on fashion_vgg_qcfs8. The arithmetic is float32 in the same order as the spec (multiply, add, divide,
floor), so the counts are bit-identical to it.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from targets.reference import torch_kernels
from toolchain.neurons import two_phase

# OpenMP first, like torch: with numba's work queue the kernel ran 1.5× slower, its threads competing with torch's
# OpenMP workers, which keep spinning for a while after each operation.
numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


@numba.njit(parallel=True, cache=True, nogil=True)
def _window_spikes(sums, scale, v_init, threshold, steps, counts, histograms):  # pragma: no cover - compiled
    batch, size = sums.shape
    low, high = np.float32(0.0), np.float32(steps)
    for b in numba.prange(batch):
        row, x = counts[b], sums[b]
        bucket = np.empty(size, np.int32)
        for i in range(size):  # vectorised: no loop-carried dependency
            n = min(max(np.floor((x[i] * scale + v_init[i]) / threshold[i]), low), high)
            row[i] = n
            bucket[i] = np.int32(n)
        # eight interleaved histograms, so that consecutive increments (mostly of count 0) do not wait on one
        # counter: the histogram costs more than the neuron
        partial = np.zeros((8, steps + 1), np.int32)
        whole = size // 8 * 8
        for i in range(0, whole, 8):
            for k in range(8):
                partial[k, bucket[i + k]] += 1
        for i in range(whole, size):
            partial[0, bucket[i]] += 1
        for n in range(steps + 1):
            histograms[b, n] = partial[:, n].sum()


_mix = numba.njit(inline="always")(two_phase.mix)  # the spec's generator, compiled


@numba.njit(inline="always")
def _uniform(key, row, size, counter):  # pragma: no cover - compiled
    """two_phase.uniforms' number in `row` of the stream of `key` for the neuron whose C-order index is counter − 1."""
    bits = _mix(key + (np.uint64(row * size) + counter) * two_phase.GOLDEN)
    return np.float64(bits >> np.uint64(11)) * 2.0 ** -53


@numba.njit(parallel=True, cache=True, nogil=True)
def _bernoulli_fire(v, threshold, limits, keys, counters, first_row, size, spikes):  # pragma: no cover - compiled
    batch, neurons = v.shape
    cycle = spikes.shape[0] // batch
    low, high = limits[0], limits[1]  # 0 and c in v's dtype: a Python number would promote float32 to float64
    for b in numba.prange(batch):
        potentials, key = v[b], keys[b]
        remaining = np.empty(neurons, np.float64)
        for i in range(neurons):  # the count, rounded stochastically with the cycle's first draw
            potential, theta = potentials[i], threshold[i]
            ratio = potential / theta  # all in v's dtype, in the spec's order, so that v − n·θ has its bits
            count = np.floor(ratio)
            fraction = ratio - count
            if fraction > 0 and _uniform(key, first_row, size, counters[i]) < fraction:
                count = np.ceil(ratio)  # floor + 1, without leaving v's dtype
            count = min(max(count, low), high)
            remaining[i] = count
            potentials[i] = potential - count * theta
        for t in range(cycle):
            fired_row, left = spikes[t * batch + b], np.float64(cycle - t)
            # step-outer: the neurons of a step are independent, so the CPU overlaps their divisions and hashes
            for i in range(neurons):
                probability = remaining[i] / left
                fired = probability >= 1  # every u < 1; with p = 0 (most neurons) no u fires either
                if 0 < probability < 1:
                    fired = _uniform(key, first_row + 1 + t, size, counters[i]) < probability
                fired_row[i] = fired
                if fired:
                    remaining[i] -= 1


def memory_order(t: torch.Tensor, leading: int) -> list[int]:
    """The dims of t after the first `leading` ones (numbered from 0), in the order they lie in memory."""
    strides = t.stride()[leading:]
    return sorted(range(t.ndim - leading), key=lambda d: -strides[d])


def _rows(t: torch.Tensor, order: list[int], in_place: bool = False) -> np.ndarray:
    """(B, neurons) array of a (B, ...) tensor, neurons in the memory order `order` of its sample dims; a view
    where the tensor is dense in that order, which `in_place` (the kernel writes into it) requires."""
    permuted = t.permute(0, *(d + 1 for d in order))
    if in_place and not permuted.is_contiguous():
        raise ValueError("a kernel's output must be dense in its memory order")
    return permuted.contiguous().reshape(t.shape[0], -1).numpy()


def _per_neuron_rows(params, shape: tuple[int, ...], order: list[int]) -> list[np.ndarray]:
    """Per-neuron parameters (broadcastable to `shape`, one sample) as flat arrays in the memory order `order`."""
    return [_rows(p.expand(shape).unsqueeze(0), order)[0] for p in params]


def _threads_like_torch() -> None:
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def window_spikes(sums: torch.Tensor, scale: int, v_init: torch.Tensor, threshold: torch.Tensor,
                  steps: int, compiled: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """Spike counts n (same shape and layout as `sums`, float32) of parallel neurons whose window input is
    sums·scale, and the number of neurons (over the batch) with each count 0..T as float64 (T+1,). Off the CPU,
    or with compiled=False, the torch version (torch_kernels), which computes the same bits."""
    if not compiled or sums.device.type != "cpu":
        return torch_kernels.window_spikes(sums, scale, v_init, threshold, steps)
    counts = torch.empty_like(sums)  # dense, so its rows below are a view that the kernel fills
    order = memory_order(counts, 1)
    rows = _rows(counts, order, in_place=True)
    histograms = np.zeros((sums.shape[0], steps + 1), np.int64)
    _threads_like_torch()
    per_neuron = _per_neuron_rows((v_init, threshold), sums.shape[1:], order)
    _window_spikes(_rows(sums, order), np.float32(scale), *per_neuron, steps, rows, histograms)
    return counts, histograms.sum(0).astype(np.float64)


def bernoulli_fire(v: torch.Tensor, threshold: torch.Tensor, keys: np.ndarray, first_row: int, spikes: torch.Tensor,
                   compiled: bool = True) -> None:
    """The `tpp` rule for one cycle, in place: spikes (c, B, ...) from potentials v (B, ...), which keep v − n·θ.
    keys: each sample's `two_phase.stream_key`; first_row: the cycle's first row of its draws (`two_phase.cycle_rows`).
    Off the CPU, or with compiled=False, the torch version (torch_kernels), which computes the same bits."""
    if not compiled or v.device.type != "cpu":
        torch_kernels.bernoulli_fire(v, threshold, keys, first_row, spikes)
        return
    cycle, shape = spikes.shape[0], tuple(threshold.shape)
    order = memory_order(v, 1)
    rows = _rows(v, order, in_place=True)
    spike_rows = _rows(spikes.reshape(-1, *spikes.shape[2:]), order, in_place=True)
    index = torch.arange(int(np.prod(shape)), dtype=torch.int64).reshape(shape)
    per_neuron = _per_neuron_rows((threshold, index), shape, order)
    _threads_like_torch()
    counters = per_neuron[1].astype(np.uint64) + np.uint64(1)  # two_phase.uniforms counts neurons from 1
    limits = np.array([0, cycle], rows.dtype)
    _bernoulli_fire(rows, per_neuron[0], limits, keys, counters, first_row, index.numel(), spike_rows)
