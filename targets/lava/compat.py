"""Make Lava 0.10 importable on Python 3.11.

Lava 0.10 declares Python < 3.11. On 3.11 its `lava.magma.compiler.var_model` module fails at import: a
dataclass there uses another (unhashable) dataclass instance as a field default, which 3.11 rejects. While that
one module is first imported, such defaults are turned into `default_factory` copies; nothing else changes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
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


def ensure_lava_importable() -> None:
    """Import Lava's one offending module under the patched dataclass machinery (a no-op once done)."""
    global _ready
    if _ready:
        return
    original = dataclasses._get_field
    if sys.version_info >= (3, 11):
        dataclasses._get_field = functools.partial(_get_field_with_factories, original)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Loihi2HWProfiler could not be imported"
            import lava.magma.compiler.var_model  # noqa: F401
    finally:
        dataclasses._get_field = original
    _ready = True
