"""The same converted network (a chain of snnc NIR nodes) built with the peers' neurons, for benchmarks only.

SpikingJelly: layers in multi-step mode ('m': time folded into the batch) and IFNode(v_reset=None: subtract).
snnTorch: torch layers with snn.Leaky(beta=1, reset_mechanism='subtract'), stepped through time.
Both are installed with --no-deps by `make bench`; neither is a dependency of snnc.
"""

from __future__ import annotations

import nir
import numpy as np
import torch

from toolchain.ir.order import topological_order


def _chain(snn: nir.NIRGraph) -> list:
    order, preds = topological_order(snn)
    if any(len(p) > 1 for p in preds.values()):
        raise ValueError("the peers' benchmark networks are chains")
    return [snn.nodes[n] for n in order if not isinstance(snn.nodes[n], (nir.Input, nir.Output))]


def _torch_layer(node, layer_module):
    if isinstance(node, nir.Affine):
        module = layer_module.Linear(node.weight.shape[1], node.weight.shape[0])
        module.weight.data, module.bias.data = torch.tensor(node.weight), torch.tensor(node.bias)
        return module
    if isinstance(node, nir.Conv2d):
        weight = torch.tensor(node.weight)
        module = layer_module.Conv2d(weight.shape[1] * node.groups, weight.shape[0], weight.shape[2:], tuple(node.stride),
                                     tuple(node.padding), tuple(node.dilation), int(node.groups))
        module.weight.data, module.bias.data = weight, torch.tensor(node.bias)
        return module
    if isinstance(node, nir.AvgPool2d):
        return layer_module.AvgPool2d(tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride))
    if isinstance(node, nir.Flatten):
        return layer_module.Flatten()
    raise ValueError(f"no peer layer for {type(node).__name__}")


def build_peer(kind: str, snn: nir.NIRGraph, steps: int):
    """A callable x (B, ...) → summed readout, running `steps` steps with the peer's neurons."""
    nodes = _chain(snn)
    if kind == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron

        modules = []
        for node in nodes:
            if isinstance(node, nir.IF):
                modules.append(neuron.IFNode(v_threshold=float(np.max(node.v_threshold)), v_reset=None, step_mode="m"))
            elif not isinstance(node, nir.I):
                modules.append(_torch_layer(node, layer))
        net = torch.nn.Sequential(*modules)
        functional.set_step_mode(net, "m")

        def run(x):
            functional.reset_net(net)
            return net(x.unsqueeze(0).repeat(steps, *([1] * x.ndim))).sum(0)

        return run
    if kind == "snntorch":
        import snntorch as snn_lib

        modules = []
        for node in nodes:
            if isinstance(node, nir.IF):
                modules.append(snn_lib.Leaky(beta=1.0, threshold=float(np.max(node.v_threshold)), reset_mechanism="subtract"))
            elif not isinstance(node, nir.I):
                modules.append(_torch_layer(node, torch.nn))

        def run(x):
            states = [m.init_leaky() if isinstance(m, snn_lib.Leaky) else None for m in modules]
            total = 0
            for _ in range(steps):
                h = x
                for i, m in enumerate(modules):
                    if isinstance(m, snn_lib.Leaky):
                        h, states[i] = m(h, states[i])
                    else:
                        h = m(h)
                total = total + h
            return total

        return run
    raise ValueError(kind)
