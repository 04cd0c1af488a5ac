"""`snnc inspect`: every ONNX node with its output shape and what snnc does with it."""

from __future__ import annotations

import onnx

from toolchain.errors import SnncError
from toolchain.frontend import SUPPORTED_OPS, import_onnx, load_onnx
from toolchain.passes import canonicalise
from toolchain.passes.lower_to_nir import layer_names
from toolchain.report.render import table


def _shape(value_info: onnx.ValueInfoProto | None) -> str:
    if value_info is None:
        return "?"
    dims = value_info.type.tensor_type.shape.dim
    return "x".join(d.dim_param or str(d.dim_value) for d in dims) or "scalar"


def inspect_model(path: str, maxpool: str = "spiking", drop_lrn: bool = False) -> tuple[str, bool]:
    """The node table, then either the canonical graph or every node that blocks conversion; and whether it converts."""
    model = load_onnx(path)
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    rows = []
    constants = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        # Shape gives constants too: the importer folds the shape arithmetic that follows it (x.view(x.size(0), -1)).
        if all(i in constants for i in node.input if i) or node.op_type == "Shape":
            constants.update(node.output)
            status = "constant (folded)"
        else:
            status = "supported" if node.op_type in SUPPORTED_OPS and node.domain in ("", "ai.onnx") else "UNSUPPORTED"
        rows.append([node.name or "(unnamed)", node.op_type, _shape(infos.get(node.output[0])), status])
    lines = [f"{path}: {len(model.graph.node)} nodes, opset "
             f"{next(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))}", "", *table(["node", "op", "output shape", "status"], rows)]
    try:
        graph = canonicalise(import_onnx(path, maxpool, model=model, drop_lrn=drop_lrn))
    except SnncError as err:
        others = [f"node '{name}' ({op}) is not supported" for name, op, _, status in rows
                  if status == "UNSUPPORTED" and f"node '{name}' ({op})" not in str(err)]
        lines += ["", "conversion fails; blocking nodes:", f"  {err}", *(f"  {o}" for o in others)]
        return "\n".join(lines), False
    names = layer_names(graph)  # the NIR nodes' names (an activation without a module path: if1, if2, ...)
    lines += ["", "canonical graph (what snnc converts; a merge has no layer of its own):", *table(
        ["layer", "op", "shape", "from ONNX node"],
        [[names.get(n.name, "—"), getattr(n.op, "kind", type(n.op).__name__), "x".join(map(str, n.shape)), n.onnx_node]
         for n in graph.nodes.values()],
    )]
    lines += [f"note: {n}" for n in graph.notes]
    return "\n".join(lines), True
