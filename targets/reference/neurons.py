"""The reference runtime's kernels of the neuron families (toolchain/neurons/): one per family, each tested against
its numpy specification. They run in place on one state tensor per layer, looping only over time.

Loihi precision (float64 holding integers) saturates the membrane potential at 24 bits, as the chip does.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch

from targets.reference.kernels import bernoulli_fire
from toolchain.errors import SnncError
from toolchain.ir.kernels import as_tensor, channels_last
from toolchain.ir.metadata import LOIHI_POTENTIAL_LIMIT, NodeMeta
from toolchain.neurons import permuted, two_phase
from toolchain.neurons.soft_reset import fire


@dataclass
class Signal:
    """A node's output: (B, ...) when constant over time, else (T, B, ...)."""

    data: torch.Tensor
    temporal: bool


def per_neuron_layout(t: torch.Tensor) -> torch.Tensor:
    """A per-neuron (C, H, W) parameter laid out like one sample of a channels-last batch, so that broadcasting
    against the state walks both in the same order."""
    return channels_last(t.unsqueeze(0))[0] if t.ndim == 3 else t


def steps_like(per_step: torch.Tensor, timesteps: int) -> torch.Tensor:
    """An uninitialised (T, *per_step.shape) tensor whose every step has per_step's layout."""
    layout = torch.channels_last if per_step.ndim == 4 else torch.contiguous_format
    folded = torch.empty((timesteps * per_step.shape[0], *per_step.shape[1:]), dtype=per_step.dtype, memory_format=layout,
                         device=per_step.device)
    return folded.view(timesteps, *per_step.shape)


def neuron_parameters(node: nir.IF, layer: str, dtype: torch.dtype = torch.float32, saturate: bool = False) -> dict:
    """An IF node's constants as tensors in the state's layout, and its family's settings from snnc's metadata;
    IF nodes of other tools reset to v_reset (NIR's meaning)."""
    meta = NodeMeta.of(node)
    shape = np.shape(node.v_threshold)
    v_reset = np.zeros(shape) if node.v_reset is None else node.v_reset
    tensors = {"threshold": as_tensor(node.v_threshold, dtype), "r": as_tensor(node.r, dtype),
               "v_init": as_tensor(np.broadcast_to(meta.v_init, shape), dtype),
               "v_reset": as_tensor(np.broadcast_to(v_reset, shape), dtype),
               "bias": as_tensor(np.broadcast_to(0.0 if meta.bias is None else meta.bias, shape), dtype)}
    return {
        **{key: per_neuron_layout(value) for key, value in tensors.items()},
        "layer": layer, "schedule": meta.schedule, "subtract": meta.subtracts, "max_spikes": meta.max_spikes_per_step,
        "unit_r": bool(np.all(np.asarray(node.r) == 1)), "saturate": saturate,
        "rule": meta.fire_rule, "cycle": meta.cycle, "seed": meta.seed,
    }


def initial_state(p: dict, signal: Signal) -> torch.Tensor:
    per_step = signal.data[0] if signal.temporal else signal.data
    return torch.empty_like(per_step).copy_(p["v_init"].expand(per_step.shape[0], *p["threshold"].shape))


def soft_reset(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
    """Spike counts (T, B, ...) of an IF layer: snnc's soft reset (toolchain/neurons/soft_reset.py) or NIR's
    reset to v_reset."""
    x, threshold = signal.data, p["threshold"]
    v = initial_state(p, signal)
    out = steps_like(v, timesteps)
    drive = None if signal.temporal else (x if p["unit_r"] else x * p["r"])
    for t in range(timesteps):
        if drive is not None:
            v += drive
        else:
            v += x[t] if p["unit_r"] else x[t] * p["r"]
        if p.get("saturate"):
            v.clamp_(-LOIHI_POTENTIAL_LIMIT, LOIHI_POTENTIAL_LIMIT)
        if p["subtract"]:
            fire(v, threshold, p["max_spikes"], out[t])
        else:
            torch.gt(v, threshold, out=out[t])
            torch.where(out[t].bool(), p["v_reset"], v, out=v)
    return out


def two_phase_window(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
    """Spikes (T, B, ...) of a two-phase layer (toolchain/neurons/two_phase.py), cycle by cycle.

    Output for a cycle is written in that cycle's slots: the layer-synchronous schedule, in which every layer
    sees its whole window before firing (the one-cycle latency per layer is accounted for in the report).
    """
    x, threshold = signal.data, p["threshold"]
    cycle = p["cycle"] or timesteps
    if timesteps % cycle:
        raise SnncError(f"layer '{p['layer']}': {timesteps} time steps are not a whole number of {cycle}-step cycles; "
                        "choose --timesteps that are multiples of --cycle")
    v = initial_state(p, signal)
    out = steps_like(v, timesteps)
    if p["rule"] == "bernoulli":
        keys = np.array([two_phase.stream_key(p["seed"], p["layer"], first_sample + b) for b in range(v.shape[0])], np.uint64)
    for start in range(0, timesteps, cycle):
        if p.get("saturate"):  # Loihi precision: the potential saturates step by step, as on the chip
            for t in range(start, start + cycle):
                v.add_(x[t] if signal.temporal else x).clamp_(-LOIHI_POTENTIAL_LIMIT, LOIHI_POTENTIAL_LIMIT)
        else:
            v += x[start: start + cycle].sum(0) if signal.temporal else x * cycle
        if p["rule"] == "deterministic":
            out[start: start + cycle], left = two_phase.deterministic_window(v, threshold, cycle)
            v.copy_(left)
        else:
            bernoulli_fire(v, threshold, keys, two_phase.cycle_rows(start, cycle).start, out[start: start + cycle],
                           compiled=p.get("compiled_kernels", True))
    return out


def permuted_window(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
    """IF spikes over the window, replayed in a seeded random order per neuron (toolchain/neurons/permuted.py)."""
    spikes = soft_reset(p, signal, timesteps)
    shape = tuple(p["threshold"].shape)
    order = np.stack([permuted.permutation(p["seed"], p["layer"], first_sample + b, timesteps, shape)
                      for b in range(spikes.shape[1])], axis=1)
    return torch.take_along_dim(spikes, torch.from_numpy(order).to(spikes.device), dim=0)


def sanafe_soft_reset(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
    """Spikes (T, B, ...) of a soft-reset IF layer in SANA-FE's arithmetic (targets/sanafe/arithmetic.py): each step
    the float64 potential is truncated toward zero to a multiple of 1/64, gains the float32 bias and the input, fires
    above θ and subtracts θ. Spikes (a signal over time) arrive one step late; a host current (constant: the analog
    input's) arrives at once, rounded to float32 as SANA-FE stores it as the bias."""
    x, threshold = signal.data, p["threshold"]
    v = initial_state(p, signal)
    out = steps_like(v, timesteps)
    host = None if signal.temporal else x.float().double() + p["bias"]
    for t in range(timesteps):
        v.mul_(64).trunc_().div_(64)
        if host is not None:
            v += host
        else:
            v += p["bias"]
            if t > 0:
                v += x[t - 1]
        torch.gt(v, threshold, out=out[t])
        v.addcmul_(out[t], threshold, value=-1)
    return out


# One kernel per family, by the schedule the NIR metadata records for it (toolchain.neurons.model.FAMILIES).
FAMILY_KERNELS = {"": soft_reset, "two_phase": two_phase_window, "permuted": permuted_window}
