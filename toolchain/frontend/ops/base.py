"""What the converters share: the `Unsupported` exception a converter raises for a node it cannot take (the
Importer turns it into one SnncError naming the node), whether a constant broadcasts, and the padding of the 2-D
windows of convolutions and pools (ONNX's `pads` or `auto_pad`, made symmetric for NIR)."""

from __future__ import annotations

import math

import numpy as np

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


class Unsupported(Exception):
    """Raised by a converter for an ONNX node it cannot take; becomes one SnncError naming the node."""


def broadcasts(small: tuple, big: tuple) -> bool:
    return all(s in (1, b) for s, b in zip(small[::-1], big[::-1]))


def window_pads(attrs: dict, hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from `pads` or `auto_pad` (SAME_UPPER puts an odd total's extra pad at the end)."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode(errors="replace") if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in AUTO_PADS:
        raise Unsupported(f"auto_pad '{auto_pad}' is not one of ONNX's {', '.join(AUTO_PADS)}; re-export the model")
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0) for n, k, s, d in zip(hw, kernel, strides, dilations)]
        small, large = [t // 2 for t in totals], [t - t // 2 for t in totals]
        return tuple(small + large) if auto_pad == "SAME_UPPER" else tuple(large + small)
    pads = tuple(int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or min(pads) < 0:
        raise Unsupported(f"pads {list(pads)} are not four non-negative numbers for a 2-D window")
    return pads


def symmetric_window(weight: np.ndarray, pads, dilations) -> tuple[np.ndarray, tuple[int, int]]:
    """A convolution weight (O, I, kh, kw) and symmetric padding that compute the same as `weight` with asymmetric
    `pads` (NIR pads symmetrically): pad both sides by the larger amount and add zero taps where the window then
    starts early (leading) or would run on past the last output (trailing). Exact."""
    before, after = pads[:2], pads[2:]
    if before == after:
        return weight, tuple(before)
    if any(d != 1 for d in dilations):
        raise Unsupported(f"asymmetric padding {list(pads)} with dilation {list(dilations)} is not supported")
    padding = tuple(max(b, a) for b, a in zip(before, after))
    taps = [(p - b, p - a) for p, b, a in zip(padding, before, after)]
    return np.pad(weight, ((0, 0), (0, 0), *taps)), padding
