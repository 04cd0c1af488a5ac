"""`snnc inspect`: every ONNX node with its output shape and what snnc does with it."""

from __future__ import annotations

import re

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


def _status(node: onnx.NodeProto, drop_lrn: bool) -> str:
    if node.op_type not in SUPPORTED_OPS or node.domain not in ("", "ai.onnx"):
        return "UNSUPPORTED"
    if node.op_type == "LRN":
        return "dropped (--drop-lrn)" if drop_lrn else "BLOCKS (--drop-lrn drops it)"
    return "supported"


def inspect_model(path: str, maxpool: str = "spiking", drop_lrn: bool = False) -> tuple[str, bool]:
    """The node table, then either the canonical graph or every node that blocks conversion; and whether it converts.
    The import stops at the first blocking node; the others are the nodes whose op alone blocks it."""
    model = load_onnx(path)
    try:
        graph, failure = canonicalise(import_onnx(path, maxpool, model=model, drop_lrn=drop_lrn)), None
    except SnncError as err:
        graph, failure = None, err
    failed_at = re.search(r"node '(.*?)' \((\w+)\)", str(failure)) if failure else None
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    rows = []
    constants = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        # Shape gives constants too: the importer folds the shape arithmetic that follows it (x.view(x.size(0), -1)).
        if all(i in constants for i in node.input if i) or node.op_type == "Shape":
            constants.update(node.output)
            status = "constant (folded)"
        else:
            status = _status(node, drop_lrn)
            if failed_at and (node.name or "(unnamed)", node.op_type) == failed_at.groups():
                status = f"{'UNSUPPORTED' if status == 'UNSUPPORTED' else 'BLOCKS'}: the error below"
        rows.append([node.name or "(unnamed)", node.op_type, _shape(infos.get(node.output[0])), status])
    lines = [f"{path}: {len(model.graph.node)} nodes, opset "
             f"{next(o.version for o in model.opset_import if o.domain in ('', 'ai.onnx'))}", "", *table(["node", "op", "output shape", "status"], rows)]
    if failure is not None:
        others = [f"node '{name}' ({op}) {status.lower()}" for name, op, _, status in rows
                  if status in ("UNSUPPORTED", "BLOCKS (--drop-lrn drops it)")]
        lines += ["", "conversion fails; blocking nodes:", f"  {failure}", *(f"  {o}" for o in others)]
        return "\n".join(lines), False
    names = layer_names(graph)  # the NIR nodes' names (an activation without a module path: if1, if2, ...)
    lines += ["", "canonical graph (what snnc converts; a merge has no layer of its own):", *table(
        ["layer", "op", "shape", "from ONNX node"],
        [[names.get(n.name, "—"), getattr(n.op, "kind", type(n.op).__name__), "x".join(map(str, n.shape)), n.onnx_node]
         for n in graph.nodes.values()],
    )]
    lines += [f"note: {n}" for n in graph.notes]
    return "\n".join(lines), True
