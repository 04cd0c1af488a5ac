"""The compiled kernels of `targets/reference/kernels.py` in plain torch, for tensors on a device numba cannot reach
(a GPU). Each computes the same bits as its numba counterpart and as the spec, elementwise over the whole batch:
on a GPU that is one pass per operation over memory, which is what a GPU is fast at; on a CPU the numba kernels
stay faster, so the runtime uses these only off the CPU (or when told to, for the tests).

The tpp generator (toolchain/neurons/two_phase.py: `mix`, `uniforms`) is uint64 arithmetic. torch's uint64 lacks
multiplication and shifts on some devices and versions, so it runs in int64 holding the same 64 bits: addition,
multiplication and xor wrap around identically in two's complement; only the right shift differs (arithmetic
in int64), so it is made logical by masking off the copies of the sign bit.
"""

from __future__ import annotations

import numpy as np
import torch

from toolchain.neurons import two_phase


def as_signed(value) -> int:
    """A uint64 constant as the int64 with the same bits."""
    value = int(value)
    return value - 2**64 if value >= 2**63 else value


GOLDEN = as_signed(two_phase.GOLDEN)
MIX_MULTIPLIERS = (as_signed(0xBF58476D1CE4E5B9), as_signed(0x94D049BB133111EB))  # those of two_phase.mix


def logical_shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """z >> bits on the 64 bits of an int64 as if unsigned: the arithmetic shift, its top `bits` bits cleared."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def mix(z: torch.Tensor) -> torch.Tensor:
    """two_phase.mix (SplitMix64's finaliser) on int64 tensors holding uint64 bits."""
    z = (z ^ logical_shift_right(z, 30)) * MIX_MULTIPLIERS[0]
    z = (z ^ logical_shift_right(z, 27)) * MIX_MULTIPLIERS[1]
    return z ^ logical_shift_right(z, 31)


def uniform(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """two_phase.uniforms' numbers for every sample and neuron: keys (B, 1, ...) int64 (each sample's stream_key),
    counters (...) int64 = row·size + the neuron's C-order index + 1; float64 in [0, 1)."""
    bits = mix(keys + counters * GOLDEN)
    return logical_shift_right(bits, 11).to(torch.float64) * 2.0**-53


def window_spikes(sums: torch.Tensor, scale: int, v_init: torch.Tensor, threshold: torch.Tensor,
                  steps: int) -> tuple[torch.Tensor, np.ndarray]:
    """kernels.window_spikes in torch: counts n = clamp(floor((S·scale + v_init)/θ), 0, T) (float32, the layout of
    `sums`) and the number of neurons with each count 0..T as float64 (T+1,). One operation at a time, in the
    spec's order (multiply, add, divide, floor), so that no fused multiply-add changes a bit."""
    counts = torch.mul(sums, np.float32(scale).item()).add_(v_init).div_(threshold).floor_().clamp_(0, steps)
    histogram = torch.bincount(counts.reshape(-1).to(torch.int64), minlength=steps + 1)
    return counts, histogram.cpu().numpy().astype(np.float64)


def bernoulli_fire(v: torch.Tensor, threshold: torch.Tensor, keys: np.ndarray, first_row: int, spikes: torch.Tensor) -> None:
    """kernels.bernoulli_fire in torch, in place: spikes (c, B, ...) of the `tpp` rule for one cycle from potentials
    v (B, ...), which keep v − n·θ. keys: each sample's two_phase.stream_key (uint64); first_row: the cycle's
    first row of its draws (two_phase.cycle_rows)."""
    cycle, shape = spikes.shape[0], tuple(threshold.shape)
    size = int(np.prod(shape, dtype=np.int64))
    sample_keys = torch.from_numpy(keys.view(np.int64)).to(v.device).reshape(-1, *(1,) * len(shape))
    counters = torch.arange(1, size + 1, dtype=torch.int64, device=v.device).reshape(shape)  # C order, from 1

    def row_draws(row: int) -> torch.Tensor:
        return uniform(sample_keys, counters + row * size)

    ratio = v / threshold  # in v's dtype, in the spec's order, so that v − n·θ has its bits
    count = torch.floor(ratio)
    fraction = ratio - count
    rounded_up = (fraction > 0) & (row_draws(first_row) < fraction)
    count = torch.where(rounded_up, torch.ceil(ratio), count).clamp_(0, cycle)
    v.sub_(count * threshold)
    remaining = count.to(torch.float64)
    for t in range(cycle):
        probability = remaining / (cycle - t)
        # every u < 1, so p ≥ 1 fires and p = 0 does not, whatever the draw
        fired = (probability >= 1) | ((probability > 0) & (row_draws(first_row + 1 + t) < probability))
        spikes[t].copy_(fired)
        remaining -= fired.to(torch.float64)
