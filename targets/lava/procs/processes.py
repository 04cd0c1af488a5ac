"""Lava Processes (interfaces: Vars and Ports) for snnc networks; their ProcessModels are in models.py.

Time in a Lava run is a sequence of sample windows of T steps: sample k is presented during steps
k·T + 1 .. k·T + T (1-based, as Lava counts). A process `delay` steps downstream of the input sees sample k
during steps k·T + delay + 1 .. k·T + delay + T and resets its state at the first of them.
"""

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class CurrentSource(AbstractProcess):
    """Sends currents[k] at every step of window k (the host-computed input of the first spiking layers)."""

    def __init__(self, *, currents: np.ndarray, period: int, name=None):
        shape = currents.shape[1:]
        super().__init__(period=period, name=name)
        self.currents = Var(shape=currents.shape, init=currents)
        self.a_out = OutPort(shape=shape)


class SoftResetNeuron(AbstractProcess):
    """snnc's neuron (toolchain.neurons): v += a_in + bias; n = clamp(floor(v/θ), 0, m); v -= n·θ; sends n.

    Resets v to v_init at the start of every window and counts each window's spikes into counts[k].
    """

    def __init__(self, *, shape, threshold, v_init, bias, max_spikes: int, period: int, delay: int, windows: int,
                 saturate: bool, name=None):
        super().__init__(max_spikes=max_spikes, period=period, delay=delay, windows=windows, saturate=saturate, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=v_init)
        self.v_init = Var(shape=shape, init=v_init)
        self.threshold = Var(shape=shape, init=threshold)
        self.bias = Var(shape=shape, init=bias)
        self.counts = Var(shape=(windows,), init=0)


class Readout(AbstractProcess):
    """Integrates a_in + bias over each window; keeps the argmax of the running sum after every step of the
    window (predictions[k, t]) and the window's final sums (sums[k])."""

    def __init__(self, *, shape, bias, period: int, delay: int, windows: int, name=None):
        super().__init__(period=period, delay=delay, windows=windows, name=name)
        self.a_in = InPort(shape=shape)
        self.total = Var(shape=shape, init=0)
        self.bias = Var(shape=shape, init=bias)
        self.predictions = Var(shape=(windows, period), init=0)
        self.sums = Var(shape=(windows, *shape), init=0)


class Multiply(AbstractProcess):
    """Elementwise synapses: a_out = (weights ⊙ s_in) · 2^weight_exp, one step late like Lava's Dense."""

    def __init__(self, *, weights: np.ndarray, weight_exp: int = 0, name=None):
        super().__init__(weight_exp=weight_exp, name=name)
        self.s_in = InPort(shape=weights.shape)
        self.a_out = OutPort(shape=weights.shape)
        self.weights = Var(shape=weights.shape, init=weights)


class DelayLine(AbstractProcess):
    """a_out[t] = s_in[t − steps]: aligns paths with fewer synaptic stages at a merge."""

    def __init__(self, *, shape, steps: int, name=None):
        super().__init__(steps=steps, name=name)
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
        self.buffer = Var(shape=(steps, *shape), init=0)


class TwoPhaseNeuron(AbstractProcess):
    """A two-phase neuron (toolchain/neurons/two_phase.py): integrates each cycle of c steps of input, then fires
    its result during the next cycle while integrating that one (bistable: the firing cycle's spikes are settled
    when it starts, so one potential, v_acc, integrates while they leave).

    Its output is one cycle later than its input: spikes for sample k leave during steps
    k·T + delay + c + 1 … k·T + delay + c + T; counts[k] counts them.
    """

    def __init__(self, *, shape, threshold, v_init, bias, rule: str, cycle: int, seed: int, layer: str,
                 period: int, delay: int, windows: int, saturate: bool, name=None):
        super().__init__(rule=rule, cycle=cycle, seed=seed, layer=layer, period=period, delay=delay, windows=windows,
                         saturate=saturate, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v_acc = Var(shape=shape, init=0)
        self.v_init = Var(shape=shape, init=v_init)
        self.threshold = Var(shape=shape, init=threshold)
        self.bias = Var(shape=shape, init=bias)
        self.counts = Var(shape=(windows,), init=0)


class PermutedIFNeuron(AbstractProcess):
    """`if-permuted` (toolchain/neurons/if_permuted.py): an IF layer that records its spikes over each window and
    replays them in a seeded random order per neuron during the next window (one window of latency)."""

    def __init__(self, *, shape, threshold, v_init, bias, seed: int, layer: str, period: int, delay: int, windows: int,
                 saturate: bool, name=None):
        super().__init__(seed=seed, layer=layer, period=period, delay=delay, windows=windows, saturate=saturate, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=v_init)
        self.v_init = Var(shape=shape, init=v_init)
        self.threshold = Var(shape=shape, init=threshold)
        self.bias = Var(shape=shape, init=bias)
        self.counts = Var(shape=(windows,), init=0)


class MaxPoolCounter(AbstractProcess):
    """Max pooling of spike counts (docs/maxpool.md): counts the spikes of every input over the window and sends, one
    step late like a synapse, how much the largest count of each pooling window grew: after each step the pool has
    sent max_w C_w(t) in total. `kernel_size`, `stride` as NIR's (rows, columns), `pads` (top, left, bottom,
    right); shapes (C, H, W)."""

    def __init__(self, *, in_shape, out_shape, kernel_size, stride, pads, period: int, delay: int, name=None):
        super().__init__(kernel_size=kernel_size, stride=stride, pads=pads, period=period, delay=delay, name=name)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        self.counts = Var(shape=in_shape, init=0)
        self.largest = Var(shape=out_shape, init=0)
