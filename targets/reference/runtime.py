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

import contextlib

import nir
import numpy as np
import torch

from targets.reference.kernels import memory_order, window_spikes
from targets.reference.neurons import FAMILY_KERNELS, Signal, neuron_parameters, per_neuron_layout, sanafe_soft_reset
from targets.result import RunResult
from toolchain.errors import SnncError
from toolchain.ir.kernels import apply_linear, as_tensor, channels_last, linear_parameters, max_pool
from toolchain.ir.metadata import GraphMeta, NodeMeta
from toolchain.ir.order import only_node_of_type, topological_order
from toolchain.progress import progress

MEMORY_BUDGET_BYTES = 128 * 2**20
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """The torch device of a --device choice: auto is cuda where torch sees a CUDA device, else cpu."""
    if name not in DEVICES:
        raise SnncError(f"--device must be one of {', '.join(DEVICES)} (got '{name}')")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SnncError("--device cuda: no CUDA device is visible to torch (torch.cuda.is_available() is false); "
                        "use --device cpu or auto")
    return torch.device(name)


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


@contextlib.contextmanager
def full_float32_precision():
    """Float32 convolutions and matrix products in float32, not TF32: cuDNN on Ampere and later GPUs rounds the
    inputs of float32 convolutions to TF32's 10-bit mantissa by default, errors of about 1e-3 that would move spikes
    beyond the float tolerance of the CPU's results. The settings before are restored after (they are global)."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


class ReferenceRuntime:
    """Runs one NIR graph; `run(x, T)` streams samples through it in memory-bounded batches."""

    def __init__(self, graph: nir.NIRGraph, threads: int | None = None, device: str = "cpu", compiled_kernels: bool = True):
        """device: cpu, cuda or auto (`resolve_device`); parameters and signals live there, results come back as
        numpy. compiled_kernels=False runs the torch kernels (what a GPU runs) on the CPU too, for the tests."""
        self.graph = graph
        self.device = resolve_device(device)
        self.compiled_kernels = compiled_kernels
        self.order, self.preds = topological_order(graph)
        self.input, self.output = only_node_of_type(graph, nir.Input), only_node_of_type(graph, nir.Output)
        self.precision = GraphMeta.of(graph).precision
        self.dtype = torch.float64 if self.precision in ("loihi", "sanafe") else torch.float32
        self.spiking = [n for n in self.order if isinstance(graph.nodes[n], nir.IF)]
        # Expanded group neurons report as their group: spikes and neurons summed over the members.
        self.layer_of = {n: NodeMeta.of(graph.nodes[n]).group or n for n in self.spiking}
        self.params = {name: self._parameters(name, node) for name, node in graph.nodes.items()}
        if threads:
            torch.set_num_threads(threads)

    def _parameters(self, name: str, node) -> dict:
        if isinstance(node, nir.IF):
            params = {**neuron_parameters(node, name, self.dtype, saturate=self.precision == "loihi"),
                      "compiled_kernels": self.compiled_kernels}
        elif isinstance(node, nir.I):
            params = {"r": per_neuron_layout(as_tensor(node.r, self.dtype))}
        else:
            params = {**linear_parameters(node, self.dtype), "max_pool": NodeMeta.of(node).pool == "max"}
        # .to keeps each tensor's strides (channels-last weights stay so); on the CPU it returns the tensor itself
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in params.items()}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in np.asarray(self.graph.nodes[self.input].input_type["input"]).reshape(-1))

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
        # the 32 MiB bound keeps glibc's heap reusing memory; a GPU's caching allocator needs no such bound
        batch_size = batch_size if batch_size and self.device.type != "cpu" else min(batch_size or largest_batch, largest_batch)
        run_batch = self._run_window_sums if self.runs_on_window_sums(timesteps) else self._run_batch
        predictions, finals = None, None
        per_step = {layer: np.zeros(timesteps) for layer in self.layer_of.values()}
        starts = range(0, len(x), batch_size)
        steps = tuple(sorted({int(t) for t in per_neuron_steps if 1 <= t <= timesteps}))
        neuron_totals: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode(), full_float32_precision():
            for start in progress(starts, label, total=len(starts)):
                batch = channels_last(torch.from_numpy(np.array(x[start: start + batch_size])).to(self.device, self.dtype))
                readout, counts = run_batch(batch, timesteps, first_sample=start, steps=steps, neuron_totals=neuron_totals)
                if predictions is None:  # written in place: small arrays kept across batches would fragment the heap
                    predictions = np.empty((timesteps, len(x)), np.int64)
                    finals = np.empty((len(x), readout.shape[-1]), np.float64 if self.dtype == torch.float64 else np.float32)
                predictions[:, start: start + len(batch)] = readout.argmax(-1).cpu().numpy()
                finals[start: start + len(batch)] = readout[-1].cpu().numpy()
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
        return spikes.sum(dim=tuple(range(2, spikes.ndim))).double().sum(1).cpu().numpy()

    def runs_on_window_sums(self, timesteps: int) -> bool:
        """True when every spiking layer is a deterministic whole-window two-phase neuron (parallel) in float
        arithmetic: its output depends only on the sum of its input over the window, so every layer can run on
        window sums, one pass per layer instead of T."""
        return self.dtype == torch.float32 and bool(self.spiking) and all(
            self.params[n]["schedule"] == "two_phase" and self.params[n]["rule"] == "deterministic" and self.params[n]["cycle"] in (0, timesteps)
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
                n, histogram = window_spikes(x, 1 if summed else timesteps, p["v_init"], p["threshold"], timesteps,
                                             compiled=self.compiled_kernels)
                values[name] = (n, True)
                counts[name] = histogram[::-1].cumsum()[::-1][1:]  # step t fires where n > t
                if steps:
                    self._add_block_totals(neuron_totals, name, n, steps)
            elif isinstance(node, nir.I):
                values[name] = (x * p["r"], summed)
            elif p.get("max_pool"):  # the largest window sum: what the pool has emitted by the window's end
                values[name] = (max_pool(node, x), summed)
            else:
                if summed and p.get("bias") is not None:  # the bias arrives at every step of the window
                    p = {**p, "bias": p["bias"] * timesteps}
                values[name] = (apply_linear(node, p, x), summed)
        raise SnncError("the NIR graph has no Output node")

    def _add_block_totals(self, totals: dict, name: str, n: torch.Tensor, steps: tuple[int, ...]) -> None:
        """Per-neuron totals up to each counted step t for spikes that fill the first n steps: min(n, t)."""
        per_step = torch.stack([_count_sum(n.clamp(max=t).unsqueeze(0), t) for t in steps]).cpu().numpy()
        self._accumulate(totals, self.layer_of[name], per_step, per_step)

    def _add_neuron_totals(self, totals: dict, name: str, spikes: torch.Tensor, steps: tuple[int, ...]) -> None:
        """Add node `name`'s spikes (T, B, ...) in one batch to its layer's per-neuron totals up to each counted step."""
        bounds = list(zip((0, *steps), steps))
        most = self.params[name]["max_spikes"]
        spike_totals = torch.stack([_count_sum(spikes[a:b], most) for a, b in bounds]).cumsum(0).cpu().numpy()
        if most > 1:
            message_totals = torch.stack([_count_sum(spikes[a:b] > 0, 1) for a, b in bounds]).cumsum(0).cpu().numpy()
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
            kernel = sanafe_soft_reset if self.precision == "sanafe" else FAMILY_KERNELS[p["schedule"]]
            return Signal(kernel(p, signal, timesteps, first_sample), temporal=True)
        if isinstance(node, nir.I):
            data = signal.data if signal.temporal else signal.data.expand(timesteps, *signal.data.shape)
            return Signal(torch.cumsum(data * p["r"], dim=0), temporal=True)
        if p.get("max_pool"):
            return Signal(self._max_pool(node, signal), signal.temporal)
        data = signal.data
        lead = data.shape[:2] if signal.temporal else None
        if lead is not None:
            data = data.reshape(-1, *data.shape[2:])  # fold time into the batch
        data = apply_linear(node, p, data)
        if p.get("round_output"):
            data = torch.round(data)
        if lead is not None:
            data = data.reshape(*lead, *data.shape[1:])
        return Signal(data, signal.temporal)

    @staticmethod
    def _max_pool(node, signal: Signal) -> torch.Tensor:
        """Max pooling of spikes (docs/maxpool.md): after every step t the pool has emitted, per output, the largest
        of its inputs' counts C_w(t) so far; so it emits max_w C_w(t) − max_w C_w(t−1) at step t. A signal that is
        the same at every step is pooled as it is (its counts grow alike)."""
        if not signal.temporal:
            return max_pool(node, signal.data)
        x = signal.data
        running = max_pool(node, x.cumsum(0).reshape(-1, *x.shape[2:]))
        running = running.reshape(*x.shape[:2], *running.shape[1:])
        return torch.diff(running, dim=0, prepend=torch.zeros_like(running[:1]))
