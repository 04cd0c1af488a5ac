"""Pass: drop nodes that compute nothing at inference (Dropout, Identity) and the output Softmax."""

import nir

from toolchain.errors import SnncError
from toolchain.graph import AnnGraph, Identity, verify


def remove_identities(graph: AnnGraph) -> AnnGraph:
    """Remove Identity nodes; a Softmax/LogSoftmax is removed only where it produces the output (or only flattens
    and identities follow it to the output).

    Softmax is monotone, so the argmax readout of the SNN is unchanged by dropping it at the output; inside
    the network it would change what the next layer sees and is refused.
    """
    for name in [n for n, node in graph.nodes.items() if isinstance(node.op, Identity)]:
        node = graph.nodes[name]
        if "Softmax" in node.op.reason and not _only_flattens_follow(graph, name):
            raise SnncError(
                f"{graph.source}: node '{node.onnx_node}' ({node.op.reason.split()[0]}) is inside the network; "
                "snnc removes Softmax only at the output (or before reshapes that end the model); move it out of the model"
            )
        graph.remove(name)
    return verify(graph)


def _only_flattens_follow(graph: AnnGraph, name: str) -> bool:
    """Whether `name` is the output or feeds only a chain of flattens and identities that ends in it (the reshapes
    after an output Softmax, which do not change the argmax of the sample's values)."""
    while name != graph.output:
        consumers = graph.consumers(name)
        if len(consumers) != 1 or not isinstance(graph.nodes[consumers[0]].op, (nir.Flatten, Identity)):
            return False
        name = consumers[0]
    return True
