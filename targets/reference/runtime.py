"""Reference runtime: executes a NIR graph for T time steps on batches of samples.

Semantics (docs/architecture.md): discrete time, dt = 1; the analog input is applied at every step; the
value arriving at a node is the sum over its incoming edges; IF nodes follow the neuron specification in
`toolchain.neurons` (snnc metadata) or NIR's reset-to-v_reset (files from other tools); the readout `I`
integrates, so the prediction at step t is the argmax of the running sum.

Speed comes from two facts. Linear ops are time-invariant, so a (T, B, ...) signal is folded into one
(T·B, ...) batch and each layer is one matmul/conv call for all T steps. A signal that is the same at every
step (the direct input and everything linear before the first neuron) is kept without a time axis and
computed once. Only neurons loop over time, in place on one state tensor. Two facts of the machine matter as
much: image signals are kept channels-last (oneDNN's convolutions and pooling run 1.5–4× faster on it than on
NCHW here), and batches are cut so that no signal exceeds 32 MiB, which glibc then serves from memory it already
holds instead of fresh pages (`batch_size_for`; docs/performance.md).

Graphs quantized by `quantize_loihi` (metadata precision `loihi`) run in exact integer arithmetic (float64
holds every value exactly): weights times 2^weight_exp, host-computed input currents rounded, membrane
potentials saturating at 24 bits; the Lava target's fixed_pt models must match this bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
import torch
import torch.nn.functional as F

from targets.reference.kernels import bernoulli_fire, memory_order, window_spikes
from toolchain.errors import SnncError
from toolchain.neurons import if_permuted, two_phase
from toolchain.nir_conventions import snnc_metadata
from toolchain.progress import progress

MEMORY_BUDGET_BYTES = 128 * 2**20
POTENTIAL_LIMIT = 2**23 - 1  # Loihi's 24-bit membrane state saturates here (loihi precision)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """An image batch or conv weight (N, C, H, W) in channels-last layout; other tensors as they are.

    With one channel both layouts are the same memory, and torch keeps NCHW strides; a convolution given such a
    weight returns NCHW. Stride 1 on C marks it channels-last, so the convolution returns channels-last directly
    (copying conv1's output of fashion_vgg_qcfs8 cost more than the convolution).
    """
    if t.ndim != 4:
        return t
    t = t.contiguous(memory_format=torch.channels_last)
    return t.as_strided(t.shape, (t.stride(0), 1, *t.stride()[2:])) if t.shape[1] == 1 else t


def _per_neuron_layout(t: torch.Tensor) -> torch.Tensor:
    """A per-neuron (C, H, W) parameter laid out like one sample of a channels-last batch, so that broadcasting
    against the state walks both in the same order."""
    return channels_last(t.unsqueeze(0))[0] if t.ndim == 3 else t


def _count_sum(counts: torch.Tensor, most: int) -> torch.Tensor:
    """Σ over the first two dims (steps, samples) of integer counts ≤ `most`, as float64 and exact: summed in float32
    (one pass, no float64 copy) while every total stays below 2^24."""
    exact_in_float32 = counts.shape[0] * counts.shape[1] * most < 2**24
    per_neuron, order = counts.shape[2:], memory_order(counts, 2)
    # a column sum over a 2-D view runs several times faster than torch's sum over the two leading dims of a
    # channels-last tensor
    rows = counts.permute(0, 1, *(2 + d for d in order)).reshape(-1, int(np.prod(per_neuron, dtype=np.int64)))
    total = rows.sum(0, dtype=torch.float32 if exact_in_float32 else torch.float64).double()
    return total.reshape([per_neuron[d] for d in order]).permute(*np.argsort(order).tolist())


def _steps_like(per_step: torch.Tensor, timesteps: int) -> torch.Tensor:
    """An uninitialised (T, *per_step.shape) tensor whose every step has per_step's layout."""
    layout = torch.channels_last if per_step.ndim == 4 else torch.contiguous_format
    folded = torch.empty((timesteps * per_step.shape[0], *per_step.shape[1:]), dtype=per_step.dtype, memory_format=layout)
    return folded.view(timesteps, *per_step.shape)


@dataclass
class Signal:
    """A node's output: (B, ...) when constant over time, else (T, B, ...)."""

    data: torch.Tensor
    temporal: bool


@dataclass
class RunResult:
    """Predictions after every prefix t = 1..T (shape (T, N)), the readout's final sums (N, classes), and spikes
    per spiking layer: in total, and per time step summed over samples (shape (T,))."""

    predictions: np.ndarray
    readout: np.ndarray = field(repr=False)
    spikes: dict[str, int]
    spikes_per_step: dict[str, np.ndarray] = field(repr=False)
    neurons: dict[str, int]
    samples: int
    timesteps: int
    # Filled when run() is given per_neuron_steps (for exact synaptic-operation counts): per spiking layer,
    # arrays (len(counted_steps), *neuron shape) summed over samples and over steps 1..t for each counted t,
    # of the spikes and of the steps in which the neuron fired at all (one message on a graded-spike chip).
    counted_steps: tuple[int, ...] = ()
    spikes_per_neuron: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    messages_per_neuron: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def accuracy(self, labels: np.ndarray) -> np.ndarray:
        """Fraction correct after each prefix t = 1..T."""
        return (self.predictions == labels[None, :]).mean(axis=1)


def _topological_order(graph: nir.NIRGraph) -> tuple[list[str], dict[str, list[str]]]:
    preds = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise SnncError(f"NIR graph edge ({src} -> {dst}) names a node the graph does not have")
        preds[dst].append(src)
    order, placed = [], set()
    remaining = dict(preds)
    while remaining:
        ready = [n for n, p in remaining.items() if all(s in placed for s in p)]
        if not ready:
            raise SnncError(f"NIR graph has a cycle through {sorted(remaining)[:3]}; snnc runs feed-forward graphs")
        for name in sorted(ready):
            order.append(name)
            placed.add(name)
            del remaining[name]
    return order, preds


class ReferenceRuntime:
    """Runs one NIR graph; `run(x, T)` streams samples through it in memory-bounded batches."""

    def __init__(self, graph: nir.NIRGraph, threads: int | None = None):
        self.graph = graph
        self.order, self.preds = _topological_order(graph)
        inputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Input)]
        outputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise SnncError(f"NIR graph has {len(inputs)} Input and {len(outputs)} Output nodes; snnc runs graphs with one of each")
        self.input, self.output = inputs[0], outputs[0]
        self.precision = str((graph.metadata.get("snnc", {}) if isinstance(graph.metadata, dict) else {}).get("precision", "float"))
        self.dtype = torch.float64 if self.precision in ("loihi", "sanafe") else torch.float32
        self.spiking = [n for n in self.order if isinstance(graph.nodes[n], nir.IF)]
        # Expanded group neurons report as their group: spikes and neurons summed over the members.
        self.layer_of = {n: str(snnc_metadata(graph.nodes[n]).get("group", n)) for n in self.spiking}
        self.params = {name: {**self._tensors_of(node, self.dtype), "layer": name} for name, node in graph.nodes.items()}
        for p in self.params.values():
            for key in ("threshold", "v_init", "v_reset", "r", "sanafe_bias"):
                if key in p:
                    p[key] = _per_neuron_layout(p[key])
        if threads:
            torch.set_num_threads(threads)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in np.asarray(self.graph.nodes[self.input].input_type["input"]).reshape(-1))

    @staticmethod
    def _tensors_of(node, dtype=torch.float32) -> dict:
        """The node's arrays as torch tensors, converted once; weights carry their 2^weight_exp."""
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        as_tensor = lambda a: torch.from_numpy(np.array(a, np_dtype))  # a writable copy
        meta = snnc_metadata(node)
        gain = 2.0 ** int(meta.get("weight_exp", 0))
        rounded = {"round_output": bool(meta.get("host", False))}
        if isinstance(node, (nir.Affine, nir.Linear)):
            bias = as_tensor(node.bias) if isinstance(node, nir.Affine) else None
            return {"weight": as_tensor(np.asarray(node.weight) * gain), "bias": bias, **rounded}
        if isinstance(node, nir.Conv2d):
            return {"weight": channels_last(as_tensor(np.asarray(node.weight) * gain)), "bias": as_tensor(node.bias), **rounded}
        if isinstance(node, nir.Scale):
            return {"scale": as_tensor(np.asarray(node.scale) * gain), **rounded}
        if isinstance(node, nir.IF):
            meta = snnc_metadata(node)
            shape = np.shape(node.v_threshold)
            v_reset = np.zeros(shape) if node.v_reset is None else node.v_reset
            return {
                "threshold": as_tensor(node.v_threshold), "r": as_tensor(node.r),
                "v_init": as_tensor(np.broadcast_to(meta.get("v_init", 0.0), shape)),
                "v_reset": as_tensor(np.broadcast_to(v_reset, shape)),
                "subtract": str(meta.get("reset", "")) == "subtract",
                "max_spikes": int(meta.get("max_spikes_per_step", 1)),
                "unit_r": bool(np.all(np.asarray(node.r) == 1)),
                "saturate": dtype == torch.float64,
                "two_phase": str(meta.get("schedule", "")) == "two_phase",
                "permuted": str(meta.get("schedule", "")) == "permuted",
                "rule": str(meta.get("fire_rule", "deterministic")),
                "cycle": int(meta.get("cycle", 0)),
                "seed": int(meta.get("seed", 0)),
                "sanafe": "delayed" in meta,  # precision sanafe (toolchain/passes/quantize_sanafe.py)
                "sanafe_bias": as_tensor(np.broadcast_to(meta.get("bias", 0.0), shape)),
            }
        if isinstance(node, nir.I):
            return {"r": as_tensor(node.r)}
        return {}

    def batch_size_for(self, timesteps: int) -> int:
        """Largest batch whose biggest per-layer signal stays within 32 MiB (a quarter of the memory budget).

        Below 32 MiB glibc serves blocks from its heap and reuses them batch after batch; above, it maps every
        block afresh and unmaps it on free, and the first touch of each fresh 4 KiB page costs more than the
        arithmetic on it: half the time of a T=8 run at batch 256 here. So a larger requested batch is run in parts.
        Networks run on window sums (parallel neurons) have no time axis in their signals.
        """
        largest = max(int(np.prod(np.shape(n.v_threshold))) for n in map(self.graph.nodes.get, self.spiking)) if self.spiking else 1
        widest = max([largest] + [int(self.params[n]["weight"].shape[0]) * 64 for n in self.order if "weight" in self.params[n]])
        steps = 1 if self.runs_on_window_sums(timesteps) else timesteps
        per_sample = 4 * steps * widest * 4
        return int(np.clip(MEMORY_BUDGET_BYTES // max(per_sample, 1), 1, 1024))

    def run(self, x: np.ndarray, timesteps: int, batch_size: int | None = None, label: str = "SNN (reference)",
            per_neuron_steps: tuple[int, ...] = ()) -> RunResult:
        if timesteps < 1:
            raise SnncError(f"timesteps must be at least 1 (got {timesteps})")
        if batch_size is not None and batch_size < 1:
            raise SnncError(f"the batch size must be at least 1 (got {batch_size})")
        if tuple(x.shape[1:]) != self.input_shape:
            raise SnncError(f"input samples have shape {tuple(x.shape[1:])}, but the NIR graph expects {self.input_shape}")
        largest_batch = self.batch_size_for(timesteps)
        batch_size = min(batch_size or largest_batch, largest_batch)
        run_batch = self._run_window_sums if self.runs_on_window_sums(timesteps) else self._run_batch
        predictions, finals = None, None
        per_step = {layer: np.zeros(timesteps) for layer in self.layer_of.values()}
        starts = range(0, len(x), batch_size)
        steps = tuple(sorted({int(t) for t in per_neuron_steps if 1 <= t <= timesteps}))
        neuron_totals: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode():
            for start in progress(starts, label, total=len(starts)):
                batch = channels_last(torch.from_numpy(np.array(x[start: start + batch_size])).to(self.dtype))
                readout, counts = run_batch(batch, timesteps, first_sample=start, steps=steps, neuron_totals=neuron_totals)
                if predictions is None:  # written in place: small arrays kept across batches would fragment the heap
                    predictions = np.empty((timesteps, len(x)), np.int64)
                    finals = np.empty((len(x), readout.shape[-1]), readout.numpy().dtype)
                predictions[:, start: start + len(batch)] = readout.argmax(-1).numpy()
                finals[start: start + len(batch)] = readout[-1].numpy()
                for name, count in counts.items():
                    per_step[self.layer_of[name]] += count
        neurons = {layer: 0 for layer in per_step}
        for name in self.spiking:
            neurons[self.layer_of[name]] += int(np.prod(np.shape(self.graph.nodes[name].v_threshold)))
        return RunResult(
            predictions=predictions, readout=finals,
            spikes={n: int(round(c.sum())) for n, c in per_step.items()}, spikes_per_step=per_step, neurons=neurons, samples=len(x), timesteps=timesteps,
            counted_steps=steps, spikes_per_neuron={layer: t[0] for layer, t in neuron_totals.items()},
            messages_per_neuron={layer: t[1] for layer, t in neuron_totals.items()},
        )

    def _run_batch(self, batch: torch.Tensor, timesteps: int, first_sample: int = 0, steps: tuple[int, ...] = (),
                   neuron_totals: dict | None = None) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """Readout running sums (T, B, classes) and each spiking node's spikes per step (T,) for one batch."""
        signals: dict[str, Signal] = {}
        remaining_reads = {n: sum(n in p for p in self.preds.values()) for n in self.order}
        counts = {}
        for name in self.order:
            node = self.graph.nodes[name]
            if isinstance(node, nir.Input):
                signals[name] = Signal(batch, temporal=False)
                continue
            incoming = self._sum_inputs([signals[p] for p in self.preds[name]], timesteps)
            for p in self.preds[name]:
                remaining_reads[p] -= 1
                if remaining_reads[p] == 0 and p != self.output:
                    del signals[p]
            if isinstance(node, nir.Output):
                readout = incoming
                break
            signals[name] = self._apply(name, node, incoming, timesteps, first_sample)
            if isinstance(node, nir.IF):
                counts[name] = self._spikes_per_step(signals[name].data)
                if steps:
                    self._add_neuron_totals(neuron_totals, name, signals[name].data, steps)
        data = readout.data if readout.temporal else readout.data.expand(timesteps, *readout.data.shape)
        if not isinstance(self.graph.nodes[self.preds[self.output][0]], nir.I):
            data = data.cumsum(0)
        return data, counts

    @staticmethod
    def _spikes_per_step(spikes: torch.Tensor) -> np.ndarray:
        """Σ over samples and neurons per step, exact: float32 sums per sample (integers below 2^24), then float64."""
        return spikes.sum(dim=tuple(range(2, spikes.ndim))).double().sum(1).numpy()

    def runs_on_window_sums(self, timesteps: int) -> bool:
        """True when every spiking layer is a deterministic whole-window two-phase neuron (parallel) in float
        arithmetic: its output depends only on the sum of its input over the window, so every layer can run on
        window sums, one pass per layer instead of T."""
        return self.dtype == torch.float32 and bool(self.spiking) and all(
            self.params[n]["two_phase"] and self.params[n]["rule"] == "deterministic" and self.params[n]["cycle"] in (0, timesteps)
            for n in self.spiking)

    def _run_window_sums(self, batch: torch.Tensor, timesteps: int, first_sample: int = 0, steps: tuple[int, ...] = (),
                         neuron_totals: dict | None = None) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        """`_run_batch` for networks of parallel neurons, on window sums (Σ_t over the window).

        A linear layer maps window sums to window sums, Σ_t (W·s[t] + b) = W·Σ_t s[t] + T·b; signals that are the
        same at every step stay per-step until they meet a neuron (×T). A parallel neuron's n = clamp(floor((S +
        v_init)/θ), 0, T) spikes fill the first n steps, so its per-step counts follow from n. The readout's rows
        all hold the window's total: a windowed network answers at the end of its window.
        """
        values: dict[str, tuple[torch.Tensor, bool]] = {}  # name -> (tensor, is a window sum)
        counts = {}
        for name in self.order:
            node, p = self.graph.nodes[name], self.params[name]
            if isinstance(node, nir.Input):
                values[name] = (batch, False)
                continue
            inputs = [values[q] for q in self.preds[name]]
            summed = any(is_sum for _, is_sum in inputs)
            terms = [t * timesteps if summed and not is_sum else t for t, is_sum in inputs]
            x = terms[0] if len(terms) == 1 else torch.stack(terms).sum(0)
            if isinstance(node, nir.Output):
                total = x if summed else x * timesteps
                return total.expand(timesteps, *total.shape), counts
            if isinstance(node, nir.IF):
                n, histogram = window_spikes(x, 1 if summed else timesteps, p["v_init"], p["threshold"], timesteps)
                values[name] = (n, True)
                counts[name] = histogram[::-1].cumsum()[::-1][1:]  # step t fires where n > t
                if steps:
                    self._add_block_totals(neuron_totals, name, n, steps)
            elif isinstance(node, nir.I):
                values[name] = (x * p["r"], summed)
            else:
                if summed and p.get("bias") is not None:  # the bias arrives at every step of the window
                    p = {**p, "bias": p["bias"] * timesteps}
                values[name] = (self._linear(node, p, x), summed)
        raise SnncError("the NIR graph has no Output node")

    def _add_block_totals(self, totals: dict, name: str, n: torch.Tensor, steps: tuple[int, ...]) -> None:
        """Per-neuron totals up to each counted step t for spikes that fill the first n steps: min(n, t)."""
        per_step = torch.stack([_count_sum(n.clamp(max=t).unsqueeze(0), t) for t in steps]).numpy()
        self._accumulate(totals, self.layer_of[name], per_step, per_step)

    def _add_neuron_totals(self, totals: dict, name: str, spikes: torch.Tensor, steps: tuple[int, ...]) -> None:
        """Add node `name`'s spikes (T, B, ...) in one batch to its layer's per-neuron totals up to each counted step."""
        bounds = list(zip((0, *steps), steps))
        most = self.params[name]["max_spikes"]
        spike_totals = torch.stack([_count_sum(spikes[a:b], most) for a, b in bounds]).cumsum(0).numpy()
        if most > 1:
            message_totals = torch.stack([_count_sum(spikes[a:b] > 0, 1) for a, b in bounds]).cumsum(0).numpy()
        else:
            message_totals = spike_totals
        self._accumulate(totals, self.layer_of[name], spike_totals, message_totals)

    @staticmethod
    def _accumulate(totals: dict, layer: str, spikes: np.ndarray, messages: np.ndarray) -> None:
        """Add one batch's per-neuron totals to the layer's, in place (arrays kept across batches would fragment
        the heap if reallocated every batch)."""
        if layer not in totals:
            totals[layer] = [np.zeros_like(spikes), np.zeros_like(messages)]
        totals[layer][0] += spikes
        totals[layer][1] += messages

    @staticmethod
    def _sum_inputs(signals: list[Signal], timesteps: int) -> Signal:
        if len(signals) == 1:
            return signals[0]
        if not any(s.temporal for s in signals):
            return Signal(sum(s.data for s in signals), temporal=False)
        total = torch.zeros_like(next(s.data for s in signals if s.temporal))
        for s in signals:
            total += s.data
        return Signal(total, temporal=True)

    def _apply(self, name: str, node, signal: Signal, timesteps: int, first_sample: int) -> Signal:
        p = self.params[name]
        if isinstance(node, nir.IF):
            kernel = (self._two_phase if p["two_phase"] else self._permuted if p["permuted"]
                      else self._sanafe_neuron if p["sanafe"] else self._neuron)
            return Signal(kernel(p, signal, timesteps, first_sample), temporal=True)
        if isinstance(node, nir.I):
            data = signal.data if signal.temporal else signal.data.expand(timesteps, *signal.data.shape)
            return Signal(torch.cumsum(data * p["r"], dim=0), temporal=True)
        data = signal.data
        lead = data.shape[:2] if signal.temporal else None
        if lead is not None:
            data = data.reshape(-1, *data.shape[2:])  # fold time into the batch
        data = self._linear(node, p, data)
        if p.get("round_output"):
            data = torch.round(data)
        if lead is not None:
            data = data.reshape(*lead, *data.shape[1:])
        return Signal(data, signal.temporal)

    @staticmethod
    def _linear(node, p: dict, x: torch.Tensor) -> torch.Tensor:
        if isinstance(node, (nir.Affine, nir.Linear)):
            return F.linear(x, p["weight"], p["bias"])
        if isinstance(node, nir.Conv2d):
            return channels_last(F.conv2d(x, p["weight"], p["bias"], tuple(node.stride), tuple(node.padding), tuple(node.dilation), int(node.groups)))
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            kernel = tuple(int(k) for k in np.atleast_1d(node.kernel_size).repeat(2)[:2]) if np.size(node.kernel_size) == 1 else tuple(int(k) for k in node.kernel_size)
            stride = tuple(int(s) for s in np.broadcast_to(node.stride, 2))
            padding = tuple(int(s) for s in np.broadcast_to(node.padding, 2))
            pooled = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True)
            return pooled * (kernel[0] * kernel[1]) if isinstance(node, nir.SumPool2d) else pooled
        if isinstance(node, nir.Scale):
            return x * p["scale"]
        if isinstance(node, nir.Flatten):
            per_sample = np.asarray(node.input_type["input"]).reshape(-1)
            start = node.start_dim % len(per_sample) + 1
            end = node.end_dim % len(per_sample) + 1
            return x.flatten(start, end)
        raise SnncError(f"NIR node type {type(node).__name__} is not run by the reference runtime")

    @staticmethod
    def _two_phase(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
        """Spikes (T, B, ...) of a two-phase layer (toolchain/neurons/two_phase.py), cycle by cycle.

        Output for a cycle is written in that cycle's slots: the layer-synchronous schedule, in which every layer
        sees its whole window before firing (the one-cycle latency per layer is accounted for in the report).
        """
        x = signal.data
        threshold = p["threshold"]
        batch = x.shape[1] if signal.temporal else x.shape[0]
        cycle = p["cycle"] or timesteps
        if timesteps % cycle:
            raise SnncError(f"layer '{p['layer']}': {timesteps} time steps are not a whole number of {cycle}-step cycles; "
                            "choose --timesteps that are multiples of --cycle")
        per_step = x[0] if signal.temporal else x
        v = torch.empty_like(per_step).copy_(p["v_init"].expand(batch, *threshold.shape))
        out = _steps_like(v, timesteps)
        if p["rule"] == "bernoulli":
            keys = np.array([two_phase.stream_key(p["seed"], p["layer"], first_sample + b) for b in range(batch)], np.uint64)
        for start in range(0, timesteps, cycle):
            if p.get("saturate"):  # Loihi precision: the potential saturates step by step, as on the chip
                for t in range(start, start + cycle):
                    v.add_(x[t] if signal.temporal else x).clamp_(-POTENTIAL_LIMIT, POTENTIAL_LIMIT)
            else:
                v += x[start: start + cycle].sum(0) if signal.temporal else x * cycle
            if p["rule"] == "deterministic":
                n = torch.div(v, threshold).floor_().clamp_(0, cycle)
                steps = torch.arange(cycle, dtype=v.dtype).reshape((cycle,) + (1,) * v.ndim)
                torch.lt(steps, n, out=out[start: start + cycle])
                v -= n * threshold
                continue
            bernoulli_fire(v, threshold, keys, start, out[start: start + cycle])
        return out

    @classmethod
    def _permuted(cls, p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
        """IF spikes over the window, replayed in a seeded random order per neuron (toolchain/neurons/if_permuted.py)."""
        spikes = cls._neuron(p, signal, timesteps)
        shape = tuple(p["threshold"].shape)
        order = np.stack([if_permuted.permutation(p["seed"], p["layer"], first_sample + b, timesteps, shape)
                          for b in range(spikes.shape[1])], axis=1)
        return torch.take_along_dim(spikes, torch.from_numpy(order), dim=0)

    @staticmethod
    def _neuron(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
        """Spike counts (T, B, ...) of an IF layer: snnc's soft reset (the neuron spec) or NIR's reset to v_reset."""
        x = signal.data
        batch = x.shape[1] if signal.temporal else x.shape[0]
        threshold = p["threshold"]
        per_step = x[0] if signal.temporal else x
        v = torch.empty_like(per_step).copy_(p["v_init"].expand(batch, *threshold.shape))
        out = _steps_like(v, timesteps)
        drive = None if signal.temporal else (x if p["unit_r"] else x * p["r"])
        for t in range(timesteps):
            if drive is not None:
                v += drive
            else:
                v += x[t] if p["unit_r"] else x[t] * p["r"]
            if p.get("saturate"):
                v.clamp_(-POTENTIAL_LIMIT, POTENTIAL_LIMIT)
            n = out[t]
            if p["subtract"]:
                if p["max_spikes"] == 1:
                    torch.ge(v, threshold, out=n)  # equals clamp(floor(v/θ), 0, 1) for θ > 0
                else:
                    torch.div(v, threshold, out=n).floor_().clamp_(0, p["max_spikes"])
                v.addcmul_(n, threshold, value=-1)  # v -= n·θ without a temporary
            else:
                torch.gt(v, threshold, out=n)
                torch.where(n.bool(), p["v_reset"], v, out=v)
        return out

    @staticmethod
    def _sanafe_neuron(p: dict, signal: Signal, timesteps: int, first_sample: int = 0) -> torch.Tensor:
        """Spikes (T, B, ...) of a soft-reset IF layer in SANA-FE's arithmetic (toolchain/passes/quantize_sanafe.py):
        each step the float64 potential is truncated toward zero to a multiple of 1/64, gains the float32 bias and
        the input, fires above θ and subtracts θ. Spikes (a signal over time) arrive one step late; a host current
        (constant: the analog input's) arrives at once, rounded to float32 as SANA-FE stores it as the bias."""
        x = signal.data
        batch = x.shape[1] if signal.temporal else x.shape[0]
        threshold = p["threshold"]
        v = torch.empty_like(x[0] if signal.temporal else x).copy_(p["v_init"].expand(batch, *threshold.shape))
        out = _steps_like(v, timesteps)
        host = None if signal.temporal else x.float().double() + p["sanafe_bias"]
        for t in range(timesteps):
            v.mul_(64).trunc_().div_(64)
            if host is not None:
                v += host
            else:
                v += p["sanafe_bias"]
                if t > 0:
                    v += x[t - 1]
            torch.gt(v, threshold, out=out[t])
            v.addcmul_(out[t], threshold, value=-1)
        return out
