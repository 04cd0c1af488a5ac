"""Pass: drop nodes that compute nothing at inference (Dropout, Identity) and the output Softmax."""

from toolchain.errors import SnncError
from toolchain.graph import AnnGraph, Identity, verify


def remove_identities(graph: AnnGraph) -> AnnGraph:
    """Remove Identity nodes; a Softmax/LogSoftmax is removed only where it produces the output.

    Softmax is monotone, so the argmax readout of the SNN is unchanged by dropping it at the output; inside
    the network it would change what the next layer sees and is refused.
    """
    for name in [n for n, node in graph.nodes.items() if isinstance(node.op, Identity)]:
        node = graph.nodes[name]
        if "Softmax" in node.op.reason and graph.output != name:
            raise SnncError(
                f"{graph.source}: node '{node.onnx_node}' ({node.op.reason.split()[0]}) is inside the network; "
                "snnc removes Softmax only at the output; move it out of the model"
            )
        graph.remove(name)
    return verify(graph)
