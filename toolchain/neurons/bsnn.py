"""`bsnn`: bistable neurons (Li, Zhao, Zeng, Front. Neurosci. 2022) — a RECONSTRUCTION (methods.md §4.2).

No code or method section was available; the verified hints are "phase lead/lag produce spikes of inactivated
neurons", "accurate delivery to the next layer after one cycle" and synchronous neurons on residual shortcuts.
The reading implemented here: time is cut into cycles of c steps (`--cycle`, default 4); in each cycle a
neuron integrates that cycle's input with firing disabled, then, in the next cycle (its firing state), emits
the spikes its potential warrants (IF firing without input, reset by subtraction), the remainder carrying on:

    v ← v + Σ_{t in cycle j} x[t];   fire during cycle j+1: s = [v ≥ θ]; v ← v − s·θ   (v[0] = θ/2)

Consecutive layers are one cycle apart. A synchronous neuron (SN) on a residual shortcut delays it by the
cycles of the branch it bypasses so both arrive together; the reference runtime aligns windows per layer, so
SNs are implicit there, and the Lava target inserts them as delay lines. With c = T this equals `parallel`.
"""

from toolchain.neurons import if_neuron
from toolchain.neurons.model import NeuronModel
from toolchain.option import Option

ORDER = 4
DEFAULT_CYCLE = 4

MODEL = NeuronModel(
    name="bsnn", family="two_phase", summary="bistable: integrate one cycle, fire the next (reconstruction)",
    parameters=if_neuron.parameters, cycle=DEFAULT_CYCLE,
    options=(Option("cycle", int, DEFAULT_CYCLE, f"bsnn's cycle length in steps (default: {DEFAULT_CYCLE}); "
                    "--timesteps must be multiples", minimum=1),),
)
