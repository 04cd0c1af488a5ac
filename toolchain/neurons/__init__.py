"""Neuron models, each declared once in its own file of this package (a `MODEL = NeuronModel(...)`), grouped in
families that share one numpy specification: `soft_reset` (if, gn), `two_phase` (parallel, tpp, bsnn) and
`permuted` (if-permuted). The registry below finds every model file; the CLI, the pipeline and the tests read it.

Adding a model to a family is one file here; a new family is its specification module, one kernel per target
and its entry in `model.FAMILIES` (docs/architecture.md lists the files).
"""

from __future__ import annotations

from functools import cache

from toolchain.errors import SnncError
from toolchain.neurons.activations import qcfs
from toolchain.neurons.model import FAMILIES, NeuronModel, NeuronParameters
from toolchain.neurons.soft_reset import simulate, step
from toolchain.registry import discover


@cache
def registry() -> dict[str, NeuronModel]:
    """Every neuron model of this package by name, in the order of their files' `ORDER`, then by name."""
    return discover(__path__, __name__, "MODEL", NeuronModel)


def get_model(name: str) -> NeuronModel:
    models = registry()
    if name not in models:
        raise SnncError(f"unknown neuron model '{name}': choose one of {', '.join(models)}")
    return models[name]


def model_names() -> list[str]:
    return list(registry())


def all_options() -> dict:
    """Every model's options by name (models of one family share option names such as `seed`)."""
    return {option.name: option for model in registry().values() for option in model.options}


__all__ = ["FAMILIES", "NeuronModel", "NeuronParameters", "all_options", "get_model", "model_names", "qcfs",
           "registry", "simulate", "step"]
