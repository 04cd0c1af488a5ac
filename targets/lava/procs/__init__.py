"""snnc's Lava processes. Lava re-executes every module in this folder when it compiles a network, so the
modules here only define classes: no work at import time. The models import the neuron rules they share with
the reference runtime from toolchain.neurons, a module without side effects."""
