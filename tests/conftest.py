import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(2)

ZOO = ROOT / "models" / "zoo"


@pytest.fixture
def zoo():
    return ZOO


def fashion_available() -> bool:
    root = Path(os.environ.get("SNNC_FASHION_ROOT", "/usr/share/datasets/fashion-mnist"))
    return (root / "t10k-images-idx3-ubyte.gz").is_file()
