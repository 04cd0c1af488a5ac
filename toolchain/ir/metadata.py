"""How snnc writes what NIR cannot say, typed.

NIR 1.0.8's IF resets *to* v_reset, starts at 0 and emits binary spikes. snnc's neurons reset by subtraction,
start at v_init and may emit several spikes per step. Each node therefore carries `metadata["snnc"]`, read and
written through `NodeMeta`; the graph carries `GraphMeta`. The fields are the keys in the file:

| field                | on         | meaning                                                            |
| -------------------- | ---------- | ------------------------------------------------------------------ |
| neuron               | IF         | neuron model name (`if`, `gn`, ...)                                 |
| reset                | IF         | `subtract` (snnc) — empty means NIR's reset to v_reset             |
| v_init               | IF         | initial membrane potential, array of the layer's shape             |
| max_spikes_per_step  | IF         | m: spikes a neuron may emit in one step (1 for binary IF)           |
| activation           | IF         | the ANN activation it replaces (`relu`, `clip`, `qcfs`)             |
| threshold, levels    | IF         | the ANN activation's λ (scalar or per channel) and QCFS level count |
| schedule             | IF         | the neuron family's schedule: empty (soft reset, step by step),     |
|                      |            | `two_phase` (integrate a window, then fire: parallel, tpp, bsnn) or |
|                      |            | `permuted` (IF over the window, then a permuted replay)             |
| fire_rule, cycle     | IF         | two-phase rule (`deterministic`, `bernoulli`) and cycle (0 = T)     |
| seed                 | IF         | seed of the random draws (`tpp`, `if-permuted`)                     |
| group, member(s)     | IF         | an expanded group neuron's layer name, member index and count       |
| scale                | IF         | Loihi precision: integer units per ANN unit at this layer's input   |
| bias                 | IF         | SANA-FE's arithmetic: the constant current the neuron adds per step |
| pool                 | SumPool2d  | `max`: a max pooling (docs/maxpool.md), written as a SumPool2d's     |
|                      |            | window; standard NIR has no max pooling, so only snnc runs it       |
| pads                 | SumPool2d  | a max pooling's asymmetric padding (top, left, bottom, right); NIR's |
|                      |            | `padding` is then 0                                                 |
| role                 | I, Scale   | `readout` (the integrator summing the last layer), `amplitude`;     |
|                      |            | portable profile: `potential`, `spikes`, `reset`, `mean`            |
| layer                | portable   | the layer whose spikes a portable node counts                       |
| weight_exp, host     | weighted   | Loihi precision: weights × 2^weight_exp; computed on the host       |
| onnx_node            | any        | the ONNX node the NIR node came from (an added node: its layer's)   |

Spike amplitudes are folded into the weights of the next layer (or a `Scale` node), so an IF node's output
is its spike count, which is also what NIR's standard meaning gives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

KEY = "snnc"
# Precisions a graph's arithmetic may have: float32, or Loihi's integers (8-bit weights, 24-bit potentials, which
# saturate at LOIHI_POTENTIAL_LIMIT), held exactly in float64 by the reference runtime.
PRECISIONS = ("float", "loihi")
# Every arithmetic a graph may be in: the precisions, and SANA-FE's (targets/sanafe/arithmetic.py), which the
# reference runtime runs for the SANA-FE target's check.
ARITHMETICS = (*PRECISIONS, "sanafe")
LOIHI_POTENTIAL_LIMIT = 2**23 - 1
SCHEDULES = ("", "two_phase", "permuted")
WINDOWED_SCHEDULES = ("two_phase", "permuted")


def raw_metadata(item) -> dict:
    """The snnc mapping of a node's or graph's metadata (empty when absent or not a mapping)."""
    meta = item.metadata.get(KEY, {}) if isinstance(getattr(item, "metadata", None), dict) else {}
    return meta if isinstance(meta, dict) else {}


def _typed(cls, raw: dict):
    """An instance of dataclass `cls` from a mapping: known keys converted to the field's type, others kept aside."""
    values, extra = {}, {}
    for key, value in raw.items():
        kind = cls.TYPES.get(key)
        if kind is None:
            extra[key] = value
        else:
            values[key] = kind(value) if kind in (str, int, bool, float) else value
    return cls(**values, extra=extra)


def _as_dict(instance) -> dict:
    """The fields that differ from their defaults, as the file stores them (plus unknown keys read earlier)."""
    defaults = type(instance)()
    values = {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance) if f.name != "extra"}
    changed = {k: v for k, v in values.items() if _differs(v, getattr(defaults, k))}
    return {**instance.extra, **changed}


def _differs(value, default) -> bool:
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return True
    return bool(value != default)


@dataclass
class NodeMeta:
    """snnc's metadata on one NIR node (see the module's table); defaults are what an absent key means."""

    neuron: str = ""
    reset: str = ""
    v_init: Any = 0.0
    max_spikes_per_step: int = 1
    activation: str = ""
    threshold: Any = None
    levels: int = 0
    schedule: str = ""
    fire_rule: str = "deterministic"
    cycle: int = 0
    seed: int = 0
    group: str = ""
    member: int = 0
    members: int = 0
    scale: float = 0.0
    bias: Any = None
    pool: str = ""
    pads: Any = None
    role: str = ""
    layer: str = ""
    weight_exp: int = 0
    host: bool = False
    onnx_node: str = ""
    extra: dict = field(default_factory=dict)

    TYPES = {"neuron": str, "reset": str, "v_init": Any, "max_spikes_per_step": int, "activation": str, "threshold": Any,
             "levels": int, "schedule": str, "fire_rule": str, "cycle": int, "seed": int, "group": str, "member": int,
             "members": int, "scale": float, "bias": Any, "pool": str, "pads": Any, "role": str, "layer": str, "weight_exp": int, "host": bool, "onnx_node": str}

    @classmethod
    def of(cls, node: nir.NIRNode) -> "NodeMeta":
        return _typed(cls, raw_metadata(node))

    def as_metadata(self) -> dict:
        """The node's `metadata` value."""
        return {KEY: _as_dict(self)}

    @property
    def subtracts(self) -> bool:
        return self.reset == "subtract"

    @property
    def windowed(self) -> bool:
        """Needs its whole window (or cycle) of input before it emits: T is part of such a neuron."""
        return self.schedule in WINDOWED_SCHEDULES


@dataclass
class GraphMeta:
    """snnc's metadata on a NIR graph: who wrote it, from what, and at which precision."""

    version: str = ""
    neuron: str = ""
    source: str = ""
    notes: str = ""
    precision: str = "float"
    gn_form: str = ""
    profile: str = ""
    weight_error: Any = None
    extra: dict = field(default_factory=dict)

    TYPES = {"version": str, "neuron": str, "source": str, "notes": str, "precision": str, "gn_form": str, "profile": str, "weight_error": Any}

    @classmethod
    def of(cls, graph: nir.NIRGraph) -> "GraphMeta":
        return _typed(cls, raw_metadata(graph))

    def as_metadata(self) -> dict:
        return {KEY: _as_dict(self)}


def with_meta(graph: nir.NIRGraph, **changes) -> dict:
    """The graph's metadata value with `changes` applied (for passes that build the next graph)."""
    return GraphMeta(**{**dataclasses.asdict(GraphMeta.of(graph)), **changes}).as_metadata()
