"""The ANN side of the conversion: the activations spiking layers reproduce, on numpy arrays or torch tensors."""

from __future__ import annotations

import numpy as np


def qcfs(x, threshold, levels: int, amplitude=None):
    """The QCFS activation (Bu et al., ICLR 2022): (a/L)·clip(floor(x·L/λ + 1/2), 0, L) with a = λ, or the spike
    amplitude θ + φ of distribution-aware calibration when given. Written once for numpy and torch."""
    xp = _torch() if hasattr(x, "detach") else np
    step = (threshold if amplitude is None else amplitude) / levels
    return step * xp.clip(xp.floor(x * levels / threshold + 0.5), 0, levels)


def _torch():
    import torch  # only when given tensors

    return torch
