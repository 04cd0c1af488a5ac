"""The reference target: a batched torch executor of snnc's NIR graphs (float mode)."""

from targets.reference.runtime import ReferenceRuntime, RunResult

__all__ = ["ReferenceRuntime", "RunResult"]
