"""`if-permuted`: the random-permutation baseline of the TPP paper (Bojković et al., ICML 2025; methods.md §5.1).

The paper reports that randomly permuting in time the spike trains of a converted network's layers improves its
accuracy, and proposes TPP neurons to get that effect. The baseline is the `if` neuron in the permuted family
(toolchain/neurons/permuted.py): the IF layer's window, replayed in a seeded random order per neuron.
"""

from toolchain.neurons import if_neuron
from toolchain.neurons.model import NeuronModel
from toolchain.neurons.tpp import SEED

ORDER = 5

MODEL = NeuronModel(name="if-permuted", family="permuted", summary="IF over the window, replayed in a random order",
                    parameters=if_neuron.parameters, options=(SEED,))
