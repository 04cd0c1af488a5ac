"""What a compile is asked to do: `CompileOptions`, checked once, whether it comes from the CLI or the Python API.

The options of neuron models and targets are not listed here: each model and target declares its own
(`toolchain.neurons`, `targets`), and `CompileOptions.from_keywords` sorts keywords to them by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

import targets
from toolchain import neurons
from toolchain.errors import SnncError

DEFAULT_TIMESTEPS = (1, 2, 4, 8, 16, 32, 64)
COUNTS = ("calibration_samples", "samples", "threads", "batch_size")


@dataclass
class CompileOptions:
    neuron: str = "if"
    targets: tuple[str, ...] = ("reference",)
    timesteps: tuple[int, ...] = DEFAULT_TIMESTEPS
    data: str = "digits"
    percentile: float = 99.9
    per_channel: bool = False
    calibration_samples: int = 1000
    samples: int | None = None
    maxpool: str = "spiking"
    snn_calibration: bool = True  # bias correction of plain-ReLU networks with causal neurons (calibrate_rates)
    drop_lrn: bool = False  # remove LRN nodes (no spiking equivalent) instead of refusing the model
    threads: int = 2
    batch_size: int | None = None
    neuron_options: dict = field(default_factory=dict)  # the chosen model's options (e.g. tau), defaults filled in
    target_options: dict = field(default_factory=dict)  # the chosen targets' options (e.g. lava_samples)

    def __post_init__(self):
        for name in COUNTS:
            _check_count(name, getattr(self, name))
        if not 0 < self.percentile <= 100:
            raise SnncError(f"--percentile must be in (0, 100] (got {self.percentile})")
        self.timesteps = parse_timesteps(self.timesteps)
        self.targets = parse_targets(self.targets)
        model = neurons.get_model(self.neuron)
        self.neuron_options = _resolved(self.neuron_options, model.options, f"neuron model '{self.neuron}'")
        # The reference runs beside every target that runs samples, so its options always apply.
        chosen = {o.name: o for t in ("reference", *self.targets) for o in targets.get_target(t).options}.values()
        for target in self.target_list():
            target.require()
        self.target_options = _resolved(self.target_options, chosen, f"target(s) {', '.join(self.targets)}")
        for name in dict.fromkeys(("reference", *self.targets)):
            targets.get_target(name).validate(self.target_options)

    @classmethod
    def from_keywords(cls, **keywords) -> "CompileOptions":
        """Options from flat keywords, as the API takes them: the neuron model's and the targets' options by name."""
        core = {f.name for f in fields(cls)} - {"neuron_options", "target_options"}
        model_options = {o.name for o in neurons.get_model(keywords.get("neuron", "if")).options}
        neuron_options = {k: keywords.pop(k) for k in list(keywords) if k in model_options}
        target_options = {k: keywords.pop(k) for k in list(keywords) if k not in core}
        return cls(**keywords, neuron_options=neuron_options, target_options=target_options)

    @property
    def model(self):
        return neurons.get_model(self.neuron)

    def target_list(self) -> list:
        return [targets.get_target(t) for t in self.targets]

    def needs_binary_spikes(self) -> bool:
        return any(t.spikes == "binary" for t in self.target_list())

    def group_form(self) -> str | None:
        """compact or expanded for graded models: the user's choice, else expanded if a target needs binary spikes."""
        if not self.model.graded:
            return None
        return self.neuron_options.get("gn_form") or ("expanded" if self.needs_binary_spikes() else "compact")

    def precisions(self) -> list[str]:
        """The precisions of the networks the targets run, float first."""
        asked = {t.precision(self.target_options) for t in self.target_list()} - {None}
        return sorted(asked | {"float"}, key=("float", "loihi").index)


def _check_count(name: str, value) -> None:
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
        raise SnncError(f"{name.replace('_', '-')} must be a whole number, at least 1 (got {value!r})")


def _resolved(given: dict, options, owner: str) -> dict:
    """`given` checked against the declared options (known name, a choice, a count ≥ minimum), defaults filled in."""
    declared = {o.name: o for o in options}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise SnncError(f"option {', '.join('--' + u.replace('_', '-') for u in unknown)} does not apply to {owner}")
    resolved = {}
    for name, option in declared.items():
        value = given.get(name, option.default)
        if value is not None and option.choices and value not in option.choices:
            raise SnncError(f"{option.flag} must be one of {', '.join(option.choices)} (got '{value}')")
        if value is not None and option.minimum is not None:
            _check_count(name, value)
        resolved[name] = value
    return resolved


def parse_timesteps(value) -> tuple[int, ...]:
    """Time steps from "1,2,4" or a sequence of ints: sorted, unique, each ≥ 1."""
    return parse_counts(value, "--timesteps")


def parse_counts(value, flag: str) -> tuple[int, ...]:
    """Positive integers from "1,2,4" or a sequence of ints, sorted and unique; `flag` names them in the error."""
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        values = ()
    if not values or values[0] < 1:
        raise SnncError(f"{flag} takes positive integers separated by commas, e.g. 1,2,4,8 (got '{text}')")
    return values


def parse_targets(value) -> tuple[str, ...]:
    """Targets from "reference,lava" or a sequence of names, each registered."""
    names = tuple(t.strip() for t in (value.split(",") if isinstance(value, str) else value) if t.strip())
    known = targets.registry()
    unknown = [t for t in names if t not in known]
    if unknown or not names:
        raise SnncError(f"unknown target '{','.join(unknown) or value}': choose from {', '.join(known)}")
    return names
