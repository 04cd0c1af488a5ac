"""ProcessModels of snnc's Lava processes: `floating_pt` (float64) and `fixed_pt` (integers, Loihi-exact)."""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from targets.lava.procs.processes import (
    CurrentSource, DelayLine, MaxPoolCounter, Multiply, PermutedIFNeuron, Readout, SoftResetNeuron, TwoPhaseNeuron,
)
from toolchain.ir.metadata import LOIHI_POTENTIAL_LIMIT as POTENTIAL_LIMIT
from toolchain.neurons import permuted, two_phase
from toolchain.neurons.soft_reset import fire


def _window(model) -> tuple[int, int]:
    """(k, step within window) of the current step for a process `delay` steps downstream; k < 0 before."""
    elapsed = model.time_step - 1 - model.proc_params["delay"]
    return (elapsed // model.proc_params["period"], elapsed % model.proc_params["period"]) if elapsed >= 0 else (-1, 0)


class _CurrentSourceModel(PyLoihiProcessModel):
    def run_spk(self):
        k = (self.time_step - 1) // self.proc_params["period"]
        self.a_out.send(self.currents[k] if k < len(self.currents) else np.zeros_like(self.currents[0]))


@implements(proc=CurrentSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyCurrentSourceFloat(_CurrentSourceModel):
    currents: np.ndarray = LavaPyType(np.ndarray, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=CurrentSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCurrentSourceFixed(_CurrentSourceModel):
    currents: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


class _SoftResetNeuronModel(PyLoihiProcessModel):
    spike_dtype = None  # float or np.int32, by precision

    def integrate(self, a, k: int, step: int, max_spikes: int):
        """The soft-reset IF step (toolchain.neurons.step): reset at a window's start, add, fire, subtract."""
        if k >= 0 and step == 0:
            self.v[:] = self.v_init
        self.v[:] = self.v + a + self.bias
        if self.proc_params["saturate"]:
            np.clip(self.v, -POTENTIAL_LIMIT, POTENTIAL_LIMIT, out=self.v)
        n = fire(self.v, self.threshold, max_spikes, np.empty_like(self.v))
        return n.astype(self.spike_dtype)

    def run_spk(self):
        k, step = _window(self)
        n = self.integrate(self.a_in.recv(), k, step, self.proc_params["max_spikes"])
        if 0 <= k < self.proc_params["windows"]:
            self.counts[k] += int(n.sum())
        self.s_out.send(n)


@implements(proc=SoftResetNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySoftResetNeuronFloat(_SoftResetNeuronModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    v_init: np.ndarray = LavaPyType(np.ndarray, float)
    threshold: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)
    spike_dtype = float


@implements(proc=SoftResetNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySoftResetNeuronFixed(_SoftResetNeuronModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    threshold: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)
    spike_dtype = np.int32


class _ReadoutModel(PyLoihiProcessModel):
    def run_spk(self):
        a = self.a_in.recv()
        k, step = _window(self)
        if k < 0 or k >= self.proc_params["windows"]:
            return
        if step == 0:
            self.total[:] = 0
        self.total[:] = self.total + a + self.bias
        self.predictions[k, step] = int(np.argmax(self.total))
        if step == self.proc_params["period"] - 1:
            self.sums[k] = self.total


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutFloat(_ReadoutModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    total: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    predictions: np.ndarray = LavaPyType(np.ndarray, np.int32)
    sums: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyReadoutFixed(_ReadoutModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    total: np.ndarray = LavaPyType(np.ndarray, np.int64)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64)
    predictions: np.ndarray = LavaPyType(np.ndarray, np.int32)
    sums: np.ndarray = LavaPyType(np.ndarray, np.int64)


class _MultiplyModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.pending = None

    def run_spk(self):
        s = self.s_in.recv()
        self.a_out.send(self.pending if self.pending is not None else np.zeros_like(self.weights))
        self.pending = self.weights * s * (2 ** self.proc_params["weight_exp"])


@implements(proc=Multiply, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyMultiplyFloat(_MultiplyModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    weights: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=Multiply, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMultiplyFixed(_MultiplyModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    weights: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=8)


class _DelayLineModel(PyLoihiProcessModel):
    def run_spk(self):
        s = self.s_in.recv()
        slot = (self.time_step - 1) % self.proc_params["steps"]
        self.a_out.send(self.buffer[slot].copy())
        self.buffer[slot] = s


@implements(proc=DelayLine, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDelayLineFloat(_DelayLineModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    buffer: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=DelayLine, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDelayLineFixed(_DelayLineModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    buffer: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)


class _TwoPhaseNeuronModel(PyLoihiProcessModel):
    """Cycle bookkeeping here; the fire rule itself and the random draws come from toolchain.neurons.two_phase."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.firing = None  # spikes (c, ...) of the cycle being emitted
        self.fire_sample = -1
        self.draws = None  # (sample, two_phase.bernoulli_draws of its window) for the Bernoulli rule

    def _uniforms(self, sample: int, start: int, cycle: int):
        if self.proc_params["rule"] != "bernoulli":
            return None
        if self.draws is None or self.draws[0] != sample:
            shape = self.threshold.shape
            self.draws = (sample, two_phase.bernoulli_draws(self.proc_params["seed"], self.proc_params["layer"], sample,
                                                            self.proc_params["period"], cycle, shape))
        return self.draws[1][two_phase.cycle_rows(start, cycle)]

    def run_spk(self):
        a = self.a_in.recv()
        period, cycle = self.proc_params["period"], self.proc_params["cycle"]
        elapsed = self.time_step - 1 - self.proc_params["delay"]
        if elapsed >= 0 and elapsed % cycle == 0:
            if elapsed > 0:  # the cycle just integrated starts firing now
                sample, start = (elapsed - cycle) // period, (elapsed - cycle) % period
                # Draws are known in advance, so the whole cycle's spikes and the remainder are settled now.
                self.firing, remainder = two_phase.RULES[self.proc_params["rule"]](
                    self.v_acc.astype(np.float64), self.threshold, cycle, self._uniforms(sample, start, cycle))
                self.fire_sample = sample
            new_sample = elapsed % period == 0
            self.v_acc[:] = self.v_init if new_sample else remainder
        if elapsed >= 0:
            self.v_acc[:] = self.v_acc + a + self.bias
            if self.proc_params["saturate"]:
                np.clip(self.v_acc, -POTENTIAL_LIMIT, POTENTIAL_LIMIT, out=self.v_acc)
        spikes = np.zeros(self.threshold.shape) if self.firing is None or elapsed < cycle else self.firing[(elapsed - cycle) % cycle]
        if self.firing is not None and elapsed >= cycle and 0 <= self.fire_sample < self.proc_params["windows"]:
            self.counts[self.fire_sample] += int(spikes.sum())
        self.s_out.send(spikes.astype(self.s_out_type))


@implements(proc=TwoPhaseNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTwoPhaseNeuronFloat(_TwoPhaseNeuronModel):
    s_out_type = np.float64
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v_acc: np.ndarray = LavaPyType(np.ndarray, float)
    v_init: np.ndarray = LavaPyType(np.ndarray, float)
    threshold: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)


@implements(proc=TwoPhaseNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTwoPhaseNeuronFixed(_TwoPhaseNeuronModel):
    s_out_type = np.int32
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    v_acc: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    threshold: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)


class _PermutedIFNeuronModel(_SoftResetNeuronModel):
    """Records the IF spikes of window k, replays them during window k+1 in the order permuted.permutation."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.recorded = None
        self.replay = None

    def run_spk(self):
        k, step = _window(self)
        period = self.proc_params["period"]
        if k >= 0 and step == 0:
            if k > 0:
                order = permuted.permutation(self.proc_params["seed"], self.proc_params["layer"], k - 1, period, self.threshold.shape)
                self.replay = np.take_along_axis(self.recorded, order, axis=0)
            self.recorded = np.zeros((period, *self.threshold.shape), self.s_out_type)
        n = self.integrate(self.a_in.recv(), k, step, 1)
        if k >= 0:
            self.recorded[step] = n
        spikes = self.replay[step] if self.replay is not None and k >= 1 else np.zeros(self.threshold.shape, self.s_out_type)
        if 1 <= k <= self.proc_params["windows"]:
            self.counts[k - 1] += int(spikes.sum())
        self.s_out.send(spikes)


@implements(proc=PermutedIFNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyPermutedIFNeuronFloat(_PermutedIFNeuronModel):
    s_out_type = np.float64
    spike_dtype = float
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    v_init: np.ndarray = LavaPyType(np.ndarray, float)
    threshold: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)


@implements(proc=PermutedIFNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyPermutedIFNeuronFixed(_PermutedIFNeuronModel):
    s_out_type = np.int32
    spike_dtype = np.int32
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    v: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    v_init: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    threshold: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int64, precision=24)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)


class _MaxPoolCounterModel(PyLoihiProcessModel):
    """The rule of the reference runtime's pool on the running counts, one step late. In numpy: Lava forks its
    processes, and torch's OpenMP pool does not survive a fork (the run hangs)."""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.pending = None

    def run_spk(self):
        s = self.s_in.recv()
        k, step = _window(self)
        self.a_out.send(self.pending if self.pending is not None else np.zeros(self.largest.shape, self.largest.dtype))
        if k >= 0 and step == 0:
            self.counts[:] = 0
            self.largest[:] = 0
        self.counts[:] = self.counts + s
        largest = self._pool(self.counts)
        self.pending = (largest - self.largest).astype(self.largest.dtype)
        self.largest[:] = largest

    def _pool(self, counts: np.ndarray) -> np.ndarray:
        """Window maxima of (C, H, W); zero padding equals max pooling's −∞ padding as counts are never negative."""
        (kh, kw), (sh, sw) = self.proc_params["kernel_size"], self.proc_params["stride"]
        top, left, bottom, right = self.proc_params["pads"]
        padded = np.pad(counts, ((0, 0), (top, bottom), (left, right)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        return windows.max(axis=(3, 4))[:, : self.largest.shape[1], : self.largest.shape[2]]


@implements(proc=MaxPoolCounter, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyMaxPoolCounterFloat(_MaxPoolCounterModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    counts: np.ndarray = LavaPyType(np.ndarray, float)
    largest: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=MaxPoolCounter, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMaxPoolCounterFixed(_MaxPoolCounterModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=8)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=8)
    counts: np.ndarray = LavaPyType(np.ndarray, np.int64)
    largest: np.ndarray = LavaPyType(np.ndarray, np.int64)
