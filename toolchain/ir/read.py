"""Reading NIR files safely: the sandboxed reader and the checks of what snnc will run.

A NIR file is HDF5. A damaged one can crash the HDF5 library or loop in it, and a few compressed bytes can declare
terabytes, so the file is read in a forked child under a time limit, dataset sizes are checked first, and every
field the runtime converts to numbers is checked before anything runs on it.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import time
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np

from toolchain.errors import MAX_TENSOR_BYTES, SnncError, error_summary
from toolchain.ir.metadata import KEY, raw_metadata
from toolchain.ir.order import only_node_of_type
from toolchain.ir.shapes import ShapeError, finite_numbers, integers, node_shapes, single_integer

SUPPORTED_NODES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d,
                   nir.Scale, nir.Flatten, nir.IF, nir.I)
_PASS_NIR = "pass a model.nir written by snnc compile or a valid NIR export"
# Reading slower than this (after a fixed allowance for starting) means HDF5 is looping on a damaged file.
READ_SECONDS_MIN, READ_BYTES_PER_SECOND_MIN = 30.0, 10e6
# What read_graph checks before the runtime converts fields to tensors or the report to numbers.
_ARRAYS = {nir.Affine: ("weight", "bias"), nir.Linear: ("weight",), nir.Conv2d: ("weight", "bias"), nir.Scale: ("scale",),
           nir.IF: ("r", "v_threshold", "v_reset"), nir.I: ("r",)}
# snnc metadata that the runtime and the report turn into numbers: arrays of finite numbers, and single integers
# within the ranges its arithmetic takes (counts exact in float32, seeds in 64 bits, weight_exp a power of 2 of
# float range, host a flag).
_METADATA_ARRAYS = ("v_init", "threshold")
_METADATA_INTEGERS = {"max_spikes_per_step": (0, 2**24), "levels": (0, 2**24), "cycle": (0, 2**24),
                      "seed": (0, 2**63 - 1), "weight_exp": (-64, 64), "host": (0, 1)}


def normalise(node: nir.NIRNode) -> nir.NIRNode:
    """Undo what HDF5 does to fields on reading (arrays for tuples, numpy scalars for ints)."""
    if isinstance(node, nir.Conv2d):
        node.stride, node.padding, node.dilation = (tuple(int(v) for v in np.atleast_1d(f)) for f in (node.stride, node.padding, node.dilation))
        node.groups = int(node.groups)
    return node


def read_graph(path) -> nir.NIRGraph:
    """Read a NIR file and check it is a graph the reference runtime can run: only supported node types,
    finite numeric parameters, snnc metadata of the documented types, one Input and one Output, no cycles,
    and shapes that agree along every edge. Anything else is an SnncError naming the file and the node."""
    if not Path(path).is_file():
        raise SnncError(f"{path}: {'not a file' if Path(path).exists() else 'no such file'}; pass the path of a model.nir")
    graph = _read_in_child(path)
    if not isinstance(graph, nir.NIRGraph) or not isinstance(graph.metadata, dict):
        raise SnncError(f"{path}: not a NIR graph (its top node is a {type(graph).__name__}); {_PASS_NIR}")
    for name, node in graph.nodes.items():
        if not isinstance(node, SUPPORTED_NODES):
            supported = ", ".join(t.__name__ for t in SUPPORTED_NODES)
            raise SnncError(f"{path}: node '{name}' is a NIR {type(node).__name__}, which snnc does not run; supported: {supported}")
        try:
            _check_fields(node)
        except ValueError as err:
            raise SnncError(f"{path}: node '{name}' ({type(node).__name__}) {err}; {_PASS_NIR}")
        normalise(node)
    try:
        for kind in (nir.Input, nir.Output):
            only_node_of_type(graph, kind)
        node_shapes(graph)
    except ShapeError as err:
        raise SnncError(f"{path}: {err}; {_PASS_NIR}")
    except SnncError as err:
        raise SnncError(f"{path}: {err}")
    return graph


def _read_in_child(path) -> nir.NIRGraph:
    """nir.read in a forked child. HDF5 follows the file's internal addresses, so a damaged file can crash it
    (SIGSEGV) or send it round in circles instead of raising an error; the child takes that risk, within a time
    limit, and hands back the graph or the error message."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child must never return into the caller's code, so it always leaves through os._exit
        status = 1
        try:
            faulthandler.disable()  # a crash here is expected and reported by the parent, without a dump on stderr
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(_graph_or_message(path), pipe)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    limit = READ_SECONDS_MIN + Path(path).stat().st_size / READ_BYTES_PER_SECOND_MIN
    payload = None
    try:
        payload = _read_until_closed(read_end, time.monotonic() + limit)
    finally:
        if payload is None:  # the time is up, or Ctrl-C
            os.kill(child, signal.SIGKILL)
        _, status = os.waitpid(child, 0)
    if payload is None:
        raise SnncError(f"{path}: a damaged HDF5 file (reading it did not finish in {limit:.0f} s); {_PASS_NIR}")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise SnncError(f"{path}: a damaged HDF5 file (reading it crashed the HDF5 library); {_PASS_NIR}")
    result = pickle.loads(payload)
    if isinstance(result, str):
        raise SnncError(result)
    return result


def _read_until_closed(fd: int, deadline: float) -> bytes | None:
    """Everything written to the pipe `fd` until its writer closes it, or None at the deadline."""
    chunks = []
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while select.select([pipe], [], [], max(deadline - time.monotonic(), 0))[0]:
            chunk = pipe.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    return None


def _graph_or_message(path) -> nir.NIRGraph | str:
    warnings.simplefilter("ignore")  # in the child only: nir's arithmetic on bad values must not add lines to stderr
    try:
        _refuse_huge_datasets(path)
        # NIR 1.0.8's own type check takes weight.shape[1] as a grouped convolution's input channels and so
        # rejects valid files; node_shapes checks the same edges with the right rule.
        return nir.read(str(path), type_check=False)
    except SnncError as err:
        return str(err)
    except Exception as err:  # nir builds nodes from whatever the file holds and fails in many ways on bad values
        detail = error_summary(err)
        detail = detail if detail.startswith(type(err).__name__) else f"{type(err).__name__}: {detail}"
        return f"{path}: not a readable NIR file ({detail}); {_PASS_NIR}"


def _refuse_huge_datasets(path) -> None:
    """Refuse before reading: a few compressed bytes of HDF5 can declare a dataset of terabytes."""
    def check(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.size * item.dtype.itemsize > MAX_TENSOR_BYTES:
            raise SnncError(
                f"{path}: dataset '{name}' declares shape {item.shape} ({item.size * item.dtype.itemsize / 2**30:.1f} GiB); "
                f"snnc reads arrays up to {MAX_TENSOR_BYTES // 2**30} GiB, so this file is damaged or not for snnc"
            )
    with h5py.File(path, "r") as f:
        f.visititems(check)


def _check_fields(node: nir.NIRNode) -> None:
    """Parameters the runtime converts to float tensors, a convolution's window (`normalise` makes it ints),
    and the types of the snnc metadata the runtime and the report read."""
    for field in _ARRAYS.get(type(node), ()):
        finite_numbers(getattr(node, field), field)
    if isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise ValueError(f"has padding '{node.padding}'; snnc runs explicit integer padding")
        integers(node.stride, "stride", 2)
        integers(node.dilation, "dilation", 2)
        integers(node.padding, "padding", 2, minimum=0)
        single_integer(node.groups, "groups", 1)
    if not isinstance(node.metadata, dict) or not isinstance(node.metadata.get(KEY, {}), dict):
        raise ValueError(f"has metadata that is not a mapping (snnc keeps its own under '{KEY}')")
    meta = raw_metadata(node)
    if meta.get("pool", "") not in ("", "max") or (meta.get("pool") == "max" and not isinstance(node, nir.SumPool2d)):
        raise ValueError(f"has metadata pool {meta.get('pool')!r}; snnc writes max pooling as a SumPool2d marked 'max'")
    if meta.get("pads") is not None:
        if meta.get("pool") != "max" or np.any(np.asarray(node.padding) != 0):
            raise ValueError("has metadata 'pads' but is not a max pooling with NIR padding 0")
        integers(meta["pads"], "metadata 'pads'", 4, minimum=0)
    for key in _METADATA_ARRAYS:
        if key in meta:
            finite_numbers(meta[key], f"metadata '{key}'")
    for key, (minimum, maximum) in _METADATA_INTEGERS.items():
        if key in meta:
            single_integer(meta[key], f"metadata '{key}'", minimum, maximum)
