"""The reference target: a batched torch executor of snnc's NIR graphs, float or Loihi precision."""

from targets.reference.runtime import ReferenceRuntime
from targets.reference.target import ReferenceTarget

ORDER = 0
TARGET = ReferenceTarget()

__all__ = ["ReferenceRuntime", "TARGET"]
