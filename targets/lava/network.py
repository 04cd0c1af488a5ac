"""Build Lava processes from a NIR graph and run many samples through them in one Lava run.

Mapping (layouts: NIR is (C, H, W); Lava's Conv is (W, H, C), so ports are transposed around it):

| NIR node             | Lava                                                                         |
|----------------------|------------------------------------------------------------------------------|
| Input and every linear node before the first neurons | computed on the host (reference kernels), sent per sample by `CurrentSource` |
| IF (snnc metadata)   | `SoftResetNeuron` (reset by subtraction, v_init, up to m spikes per step), or `TwoPhaseNeuron` for parallel/tpp/bsnn |
| Affine               | `Dense` (graded input; fixed_pt: 8-bit weights and weight_exp)               |
| Conv2d               | `Conv` with the kernel flipped (Lava convolves, ONNX/NIR correlate); 2^e folded into the weights |
| AvgPool2d / SumPool2d| depthwise `Conv` with a constant kernel                                      |
| max pooling (a SumPool2d marked `pool: max`) | `MaxPoolCounter` (the running-count rule of docs/maxpool.md) |
| Scale                | `Multiply` (elementwise synapses)                                            |
| Flatten              | a reshaping of the port, no process                                          |
| I (readout)          | `Readout` (running sums and argmax per step of each window)                  |

Lava has no bias on its synapses, so each neuron gets the bias that reaches it (every upstream bias carried
through the linear nodes in between) as its own `bias`. Every synaptic process delays by one step; a neuron
`delay` steps from the input handles sample k in steps k·T + delay + 1 … k·T + delay + T, resetting at the
first, and merges of paths with different delays get a `DelayLine`. Results are read from small Vars
(spike counts per window, predictions, final sums), never from rasters.
"""

from __future__ import annotations

import nir
import numpy as np
import torch

from targets.lava.compat import ensure_lava_importable
from targets.reference import ReferenceRuntime
from targets.result import RunResult
from toolchain.errors import SnncError
from toolchain.ir.kernels import apply_linear, max_pool
from toolchain.ir.metadata import NodeMeta
from toolchain.ir.order import input_side_nodes, topological_order
from toolchain.ir.shapes import pair, pool_output_shape, window_pads

TAGS = ("fixed_pt", "floating_pt")
SYNAPTIC = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Scale)


class _Builder:
    def __init__(self, graph: nir.NIRGraph, x: np.ndarray, timesteps: int, tag: str):
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense

        from targets.lava.procs.processes import (
            CurrentSource, DelayLine, MaxPoolCounter, Multiply, PermutedIFNeuron, Readout, SoftResetNeuron, TwoPhaseNeuron,
        )

        self.classes = dict(Conv=Conv, Dense=Dense, CurrentSource=CurrentSource, DelayLine=DelayLine,
                            MaxPoolCounter=MaxPoolCounter, Multiply=Multiply,
                            PermutedIFNeuron=PermutedIFNeuron, Readout=Readout, SoftResetNeuron=SoftResetNeuron,
                            TwoPhaseNeuron=TwoPhaseNeuron)
        self.graph, self.timesteps, self.tag = graph, timesteps, tag
        self.fixed = tag == "fixed_pt"
        self.samples = len(x)
        self.runtime = ReferenceRuntime(graph)
        self.order, self.preds = topological_order(graph)
        self.host = input_side_nodes(graph)
        self.host_values = self._evaluate_host(x)
        # node -> the OutPorts (NIR layout) whose sum is its output, with their delay; a node without a process
        # (Flatten) hands on one port per input and its consumer sums them, as NIR sums edges.
        self.outputs: dict[str, list[tuple[object, int]]] = {}
        self.bias: dict[str, np.ndarray] = {}             # node -> bias carried on its output
        self.neurons: dict[str, object] = {}
        self.readout = None
        self.source_processes = []

    def _evaluate_host(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = {}
        with torch.inference_mode():
            for name in self.order:
                if name not in self.host:
                    continue
                node = self.graph.nodes[name]
                if isinstance(node, nir.Input):
                    values[name] = torch.from_numpy(np.array(x)).to(self.runtime.dtype)
                    continue
                params = self.runtime.params[name]
                inputs = sum(values[p] for p in self.preds[name])
                out = max_pool(node, inputs) if params["max_pool"] else apply_linear(node, params, inputs)
                values[name] = torch.round(out) if params.get("round_output") else out
        return {name: value.numpy() for name, value in values.items()}

    def _number(self, array) -> np.ndarray:
        return np.asarray(array).astype(np.int64 if self.fixed else np.float64)

    def _carry_bias(self, node, name: str, incoming: np.ndarray) -> np.ndarray:
        """The bias a linear node hands on: its own bias plus what it does to the bias it receives."""
        params = self.runtime.params[name]
        with torch.inference_mode():
            value = torch.from_numpy(np.array(incoming, np.float64))[None].to(self.runtime.dtype)
            out = apply_linear(node, params, value)[0].numpy()
        return out

    def _input_of(self, name: str) -> tuple[list[tuple[object, int]], np.ndarray]:
        """The ports feeding `name` aligned to one delay (DelayLines added), and the bias they carry."""
        sources = [port for p in self.preds[name] if p not in self.host for port in self.outputs[p]]
        bias = sum((self.bias[p] for p in self.preds[name] if p not in self.host), np.zeros(()))
        if not sources:
            return [], bias
        latest = max(d for _, d in sources)
        aligned = []
        for port, delay in sources:
            if delay < latest:
                line = self.classes["DelayLine"](shape=port.shape, steps=latest - delay)
                port.connect(line.s_in)
                port = line.a_out
            aligned.append((port, latest))
        return aligned, bias

    def build(self) -> None:
        for name in self.order:
            node = self.graph.nodes[name]
            if name in self.host or isinstance(node, nir.Output):
                continue
            sources, bias = self._input_of(name)
            host_input = [self.host_values[p] for p in self.preds[name] if p in self.host]
            if isinstance(node, (nir.IF, nir.I)):
                self._spiking_or_readout(name, node, sources, bias, host_input)
            elif isinstance(node, nir.Flatten):
                self.outputs[name] = [(port.flatten(), delay) for port, delay in sources]
                self.bias[name] = np.asarray(bias).reshape(-1) if np.ndim(bias) else bias
            elif NodeMeta.of(node).pool == "max":
                self._max_pool(name, node, sources, bias)
            elif isinstance(node, SYNAPTIC):
                self._synapse(name, node, sources, bias)
            else:
                raise SnncError(f"NIR node '{name}' ({type(node).__name__}) has no Lava mapping")

    def _spiking_or_readout(self, name, node, sources, bias, host_input) -> None:
        shape = tuple(np.shape(node.r))
        delay = sources[0][1] if sources else 0
        if host_input:
            if sources:
                raise SnncError(f"layer '{name}' mixes host input and spikes; the Lava target does not map that")
            currents = self._number(sum(host_input))
            source = self.classes["CurrentSource"](currents=currents, period=self.timesteps)
            self.source_processes.append(source)
            sources = [(source.a_out, 0)]
        bias = self._number(np.broadcast_to(bias, shape))
        if isinstance(node, nir.I):
            process = self.classes["Readout"](shape=shape, bias=bias, period=self.timesteps, delay=delay, windows=self.samples)
            self.readout = process
        else:
            meta = NodeMeta.of(node)
            if not meta.subtracts:
                raise SnncError(f"layer '{name}' is a NIR IF without snnc's reset by subtraction; the Lava target runs snnc's neurons")
            common = dict(shape=shape, threshold=self._number(node.v_threshold), bias=bias, period=self.timesteps, delay=delay,
                          v_init=self._number(np.broadcast_to(meta.v_init, shape)), windows=self.samples,
                          saturate=self.fixed, name=name)
            if meta.schedule == "two_phase":
                cycle = meta.cycle or self.timesteps
                process = self.classes["TwoPhaseNeuron"](rule=meta.fire_rule, cycle=cycle, seed=meta.seed,
                                                         layer=name, **common)
                out_delay = delay + cycle  # it fires a cycle after integrating it
            elif meta.schedule == "permuted":
                process = self.classes["PermutedIFNeuron"](seed=meta.seed, layer=name, **common)
                out_delay = delay + self.timesteps  # it replays a window after recording it
            else:
                process = self.classes["SoftResetNeuron"](max_spikes=meta.max_spikes_per_step, **common)
                out_delay = delay
            self.neurons[name] = process
            self.outputs[name] = [(process.s_out, out_delay)]
            self.bias[name] = np.zeros(())
        for port, _ in sources:
            port.connect(process.a_in)

    def _synapse(self, name, node, sources, bias) -> None:
        params = self.runtime.params[name]
        exponent = NodeMeta.of(node).weight_exp
        in_shape = tuple(sources[0][0].shape)
        delay = sources[0][1] + 1  # sources are aligned to one delay; every synaptic process adds a step
        if isinstance(node, (nir.Affine, nir.Linear)):
            weights = np.asarray(node.weight)
            kwargs = dict(weight_exp=exponent, num_weight_bits=8) if self.fixed else {}
            process = self.classes["Dense"](weights=self._number(weights if self.fixed else weights * 2.0**exponent), num_message_bits=24, **kwargs)
            inputs, output = process.s_in, process.a_out
        elif isinstance(node, nir.Scale):
            weights = np.asarray(node.scale)
            process = self.classes["Multiply"](weights=self._number(weights if self.fixed else weights * 2.0**exponent), weight_exp=exponent if self.fixed else 0)
            inputs, output = process.s_in, process.a_out
        else:
            weight, stride, padding, dilation, groups = self._conv_parameters(node, params, in_shape)
            process = self.classes["Conv"](weight=self._number(weight), input_shape=(in_shape[2], in_shape[1], in_shape[0]),
                                           padding=padding, stride=stride, dilation=dilation, groups=groups, num_message_bits=24)
            inputs, output = process.s_in, process.a_out.transpose([2, 1, 0])
            sources = [(port.transpose([2, 1, 0]), d) for port, d in sources]
        for port, _ in sources:
            port.connect(inputs)
        self.outputs[name] = [(output, delay)]
        self.bias[name] = self._carry_bias(node, name, np.broadcast_to(bias, in_shape))

    def _max_pool(self, name, node, sources, bias) -> None:
        if np.any(bias):
            raise SnncError(f"max pooling '{name}' receives a bias, not only spikes; the Lava target pools spike counts")
        in_shape = tuple(sources[0][0].shape)
        out_shape = pool_output_shape(node, in_shape)
        process = self.classes["MaxPoolCounter"](
            in_shape=in_shape, out_shape=out_shape, kernel_size=pair(node.kernel_size), stride=pair(node.stride),
            pads=window_pads(node), period=self.timesteps, delay=sources[0][1])
        for port, _ in sources:
            port.connect(process.s_in)
        self.outputs[name] = [(process.a_out, sources[0][1] + 1)]  # one step late, like a synapse
        self.bias[name] = np.zeros(())

    @staticmethod
    def _conv_parameters(node, params, in_shape):
        """Lava Conv weight (C_out, W, H, C_in/g), flipped, from a NIR Conv2d or a pool (constant depthwise kernel)."""
        if isinstance(node, nir.Conv2d):
            weight = params["weight"].numpy()  # includes 2^weight_exp: Lava's Conv ignores weight_exp
            return (weight.transpose(0, 3, 2, 1)[:, ::-1, ::-1], pair(node.stride)[::-1], pair(node.padding)[::-1],
                    pair(node.dilation)[::-1], int(node.groups))
        kh, kw = pair(node.kernel_size)
        value = 1.0 / (kh * kw) if isinstance(node, nir.AvgPool2d) else 1.0
        weight = np.full((in_shape[0], kw, kh, 1), value)
        return weight, pair(node.stride)[::-1], pair(node.padding)[::-1], (1, 1), in_shape[0]

    def run(self) -> RunResult:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        if self.readout is None:
            raise SnncError("the NIR graph has no readout (nir.I) node; the Lava target needs one")
        total_steps = self.samples * self.timesteps + max(d for ports in self.outputs.values() for _, d in ports) + 1
        anchor = self.readout
        try:
            anchor.run(condition=RunSteps(num_steps=total_steps), run_cfg=Loihi2SimCfg(select_tag=self.tag))
            predictions = np.asarray(self.readout.predictions.get()).astype(np.int64).T
            sums = np.asarray(self.readout.sums.get(), np.float64)
            counts = {name: np.asarray(p.counts.get()) for name, p in self.neurons.items()}
        finally:
            anchor.stop()
        return self._result(predictions, sums, counts)

    def _result(self, predictions, sums, counts) -> RunResult:
        layer_of = self.runtime.layer_of
        spikes = {layer: 0 for layer in layer_of.values()}
        for name, per_window in counts.items():
            spikes[layer_of[name]] += int(per_window.sum())
        neurons = {layer: 0 for layer in spikes}
        for name in layer_of:
            neurons[layer_of[name]] += int(np.prod(np.shape(self.graph.nodes[name].v_threshold)))
        return RunResult(predictions=predictions, readout=sums, spikes=spikes,
                         spikes_per_step={}, neurons=neurons, samples=self.samples, timesteps=self.timesteps)


def run_lava(graph: nir.NIRGraph, x: np.ndarray, timesteps: int, tag: str = "fixed_pt") -> RunResult:
    """Run samples x through the network in one Lava run (Loihi2SimCfg with `tag`); spikes_per_step is empty."""
    if tag not in TAGS:
        raise SnncError(f"Lava tag must be one of {', '.join(TAGS)} (got '{tag}')")
    ensure_lava_importable()
    builder = _Builder(graph, x, timesteps, tag)
    builder.build()
    return builder.run()
