"""Make Lava 0.10 importable on Python 3.11.

Lava 0.10 declares Python < 3.11. On 3.11 its `lava.magma.compiler.var_model` module fails at import: a
dataclass there uses another (unhashable) dataclass instance as a field default, which 3.11 rejects. While that
one module is first imported, such defaults are turned into `default_factory` copies; nothing else changes.

Lava also calls `multiprocessing.set_start_method('fork')` when its runtime is first imported, which raises if the
process has fixed its start method already: numba does, to 'fork' too, when its thread pool starts (the reference
runtime's kernels). While that module is imported, setting the method the process already has is a no-op.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import multiprocessing
import sys
import warnings

_ready = False


def _get_field_with_factories(original, cls, name, annotation, *args, **kwargs):
    default = cls.__dict__.get(name, dataclasses.MISSING)
    unhashable_dataclass = (
        default is not dataclasses.MISSING and not isinstance(default, dataclasses.Field)
        and dataclasses.is_dataclass(default) and type(default).__hash__ is None
    )
    if unhashable_dataclass:
        setattr(cls, name, dataclasses.field(default_factory=functools.partial(copy.deepcopy, default)))
    return original(cls, name, annotation, *args, **kwargs)


def _set_start_method_unless_set(original, method, force=False):
    if not force and multiprocessing.get_start_method(allow_none=True) == method:
        return
    original(method, force)


def ensure_lava_importable() -> None:
    """Import Lava's two offending modules under the patches above (a no-op once done)."""
    global _ready
    if _ready:
        return
    original_field, original_start = dataclasses._get_field, multiprocessing.set_start_method
    if sys.version_info >= (3, 11):
        dataclasses._get_field = functools.partial(_get_field_with_factories, original_field)
    multiprocessing.set_start_method = functools.partial(_set_start_method_unless_set, original_start)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Loihi2HWProfiler could not be imported"
            import lava.magma.compiler.var_model  # noqa: F401
            import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    finally:
        dataclasses._get_field, multiprocessing.set_start_method = original_field, original_start
    _ready = True
