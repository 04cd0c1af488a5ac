"""Does a compiled network fit on a chip, on how many cores, and if not, why (docs/resources.md).

Each chip file in toolchain/chips/ names its `mapping`:

core array (Loihi 1, Loihi 2): every layer is cut into equal slices of consecutive neurons, one slice per core
(nengo-loihi's sequential split; neurons ordered channels last or channels first, whichever needs fewer cores),
and gets the fewest slices for which every slice meets every per-core limit the chip file gives: compartments; input axons (distinct source neurons with a synapse into the slice);
synapse memory in nengo-loihi's format (per input axon, its synapses into the slice in blocks of 64, 8-bit
weights plus compartment index bits in the sparse format, or one weight per compartment of the slice in the
dense format, whichever is smaller, 10 header bits per block, rounded up to 64-bit words); distinct
thresholds (threshold configurations); and output axons (per neuron, the destination cores it reaches).
Layers are split from the last to the first, so a layer's destination cores are known when its output axons
are counted. A binary-spike chip runs group neurons as their binary members. A layer fed only by the analog
input gets its currents from the host (as snnc's Lava mapping does): it needs compartments, no synapses.

layer per core (Speck): see toolchain/costs/layer_per_core.py.
"""

from __future__ import annotations

import math

import nir
import numpy as np
import torch

from toolchain.chips import value
from toolchain.costs.layer_per_core import layer_per_core
from toolchain.costs.operations import COUNT_DTYPE, Layer, StructuralKernels, exact_counts, layers_of

ATOMS_PER_BATCH = 32  # atoms whose synapses one backward pass counts: bounds memory on large layers
ATOMS_PER_LAYER = 512  # a layer is split into cores of whole atoms; more atoms, finer splits, more memory

CORE_LIMITS = {  # usage key -> (limit key in the chip file, how a finding names it)
    "compartments": ("compartments_per_core", "compartments"),
    "input_axons": ("input_axons_per_core", "input axons"),
    "output_axons": ("output_axons_per_core", "output axons"),
    "synapse_bits": ("synapse_memory_bits_per_core", "synapse memory"),
    "thresholds": ("threshold_configs_per_core", "threshold configurations"),
}


def resource_report(chips: dict[str, dict], graded: nir.NIRGraph, binary: nir.NIRGraph) -> dict[str, dict]:
    """Fit of the network on every chip with a mapping: `graded` is the compact form (group neurons emit
    several spikes per step), `binary` the same network with group neurons expanded into binary members."""
    report = {}
    for key, chip in chips.items():
        if chip.get("mapping") == "core array":
            report[key] = CoreArray(chip, binary if chip.get("spikes") == "binary" else graded).fit()
        elif chip.get("mapping") == "layer per core":
            report[key] = layer_per_core(chip, graded)
    return report


def _amount(usage: str, count: float) -> str:
    if usage == "synapse_bits":
        size = count / 8
        return next(f"{size / scale:.1f} {unit}" for scale, unit in ((2**20, "MB"), (2**10, "KB"), (1, "B"))
                    if size >= scale or unit == "B")
    return f"{int(count)}"


class CoreArray:
    """Splits every layer of a graph over the cores of a chip with per-core limits (module docstring)."""

    def __init__(self, chip: dict, graph: nir.NIRGraph):
        self.chip = chip
        self.limits = {k: value(v) for k, v in chip["limits"].items()}
        self.format = {k: value(v) for k, v in chip.get("synapse_format", {}).items()}
        self.graph = graph
        self.kernels = StructuralKernels(graph)
        self.layers = layers_of(graph, self.kernels.order, self.kernels.shapes)
        # per spiking node: for each of its neurons, the cores (of all later layers) it sends to
        self.destination_cores = {node: np.zeros(layer.units, np.int64)
                                  for layer in self.layers.values() if not layer.readout for node in layer.nodes}

    def fit(self) -> dict:
        rows = [self._split(layer) for layer in reversed(list(self.layers.values()))][::-1]
        cores = sum(row["cores"] for row in rows)
        fits = all(row["fits"] for row in rows)
        chips = math.ceil(cores / self.limits["cores_per_chip"]) if fits else None
        unfit = [row["layer"] for row in rows if not row["fits"]]
        summary = (f"{self.chip['name']}: fits, {cores} cores on {chips} chip{'s' if chips > 1 else ''} of "
                   f"{self.limits['cores_per_chip']} cores" if fits else
                   f"{self.chip['name']}: does not fit: {', '.join(unfit)} cannot be placed on any number of cores")
        return {"name": self.chip["name"], "mapping": "core array", "spikes": self.chip.get("spikes", "binary"),
                "fits": fits, "cores": cores, "chips": chips, "layers": rows,
                "findings": [summary, *(f"{row['layer']}: {row['cores']} core{'s' if row['cores'] > 1 else ''}; {row['reason']}"
                                        if row["fits"] else f"{row['layer']}: {row['reason']}" for row in rows),
                             *self.chip.get("notes", [])],
                "limits": {k: {"value": value(v), "source": v["source"]} for k, v in self.chip["limits"].items()}}

    def _split(self, layer: Layer) -> dict:
        """The layer's split over the fewest cores, placing neurons channels last or channels first (per-channel
        thresholds favour channels first, convolutions channels last), and what it takes per core."""
        orders = [True] + ([False] if self._thresholds_may_bind(layer) else [])
        fits, usage, reached, checked, atom = min(
            (self._search(layer, Connections(self.kernels, layer, _placement_order(layer, last), self.destination_cores))
             for last in orders), key=lambda found: (not found[0], len(found[1]["compartments"])))
        for node, cores in reached.items():
            self.destination_cores[node] += cores
        cores = len(usage["compartments"])
        return {"layer": layer.name, "neurons": layer.neurons, "members": len(layer.nodes), "cores": cores,
                "fits": fits, "host_input": not reached and not layer.readout,
                "max_per_core": {k: int(v.max()) for k, v in checked.items()},
                "totals": {k: int(v.sum()) for k, v in checked.items()},
                "reason": self._reason(layer, cores, checked, fits, bool(reached), atom)}

    def _thresholds_may_bind(self, layer: Layer) -> bool:
        """Whether the layer has more distinct thresholds than a core takes (then channels first may need fewer cores)."""
        if layer.readout or "threshold_configs_per_core" not in self.limits:
            return False
        thresholds = np.concatenate([np.asarray(self.graph.nodes[n].v_threshold).reshape(-1) for n in layer.nodes])
        return len(np.unique(thresholds)) > self.limits["threshold_configs_per_core"]

    def _search(self, layer: Layer, connections: "Connections") -> tuple:
        """The most atoms per core (so the fewest cores) for which every core fits, by bisection (usage grows with
        the atoms per core). Returns whether it fits, the usage and reach of that split, the usage that decided
        it, and the atom size."""
        most = max(1, self.limits["compartments_per_core"] // connections.atom)
        usage, reached = self._usage(layer, connections, most)
        if self._worst(usage) <= 1:
            return True, usage, reached, usage, connections.atom
        usage, reached = self._usage(layer, connections, 1)
        if self._worst(usage) > 1:  # earlier layers count their output axons against a split by compartments alone
            return (False, *self._usage(layer, connections, most), usage, connections.atom)
        low, high = 1, most  # low fits, high does not
        while high - low > 1:
            middle = (low + high) // 2
            trial = self._usage(layer, connections, middle)
            if self._worst(trial[0]) <= 1:
                low, (usage, reached) = middle, trial
            else:
                high = middle
        balanced = math.ceil(connections.atoms / math.ceil(connections.atoms / low))  # same cores, evened out
        if balanced < low and self._worst((trial := self._usage(layer, connections, balanced))[0]) <= 1:
            usage, reached = trial
        return True, usage, reached, usage, connections.atom

    def _worst(self, usage: dict[str, np.ndarray]) -> float:
        """The largest share of a per-core limit any core uses."""
        return max(float(v.max()) / self.limits[CORE_LIMITS[k][0]] for k, v in usage.items() if CORE_LIMITS[k][0] in self.limits)

    def _usage(self, layer: Layer, connections: "Connections", atoms_per_core: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per core, with `atoms_per_core` atoms of consecutive neurons on each: compartments, thresholds, output
        axons, input axons and synapse bits; and per source node, how many of these cores each neuron reaches."""
        size = atoms_per_core * connections.atom
        starts = np.arange(0, layer.neurons, size)
        ends = np.minimum(starts + size, layer.neurons)
        usage = {"compartments": ends - starts}
        if not layer.readout:
            usage["thresholds"] = np.array([len(np.unique(connections.thresholds[a:b])) for a, b in zip(starts, ends)])
            usage["output_axons"] = np.add.reduceat(connections.destination_cores, starts)
        core_of_pair, source, synapses = connections.per_core(atoms_per_core)
        usage["input_axons"] = np.bincount(core_of_pair, minlength=len(starts))
        bits = self._axon_bits(synapses, (ends - starts)[core_of_pair])
        usage["synapse_bits"] = np.bincount(core_of_pair, weights=bits, minlength=len(starts)).astype(np.int64)
        cores_reached = np.bincount(source, minlength=connections.sources_total)
        return usage, {node: cores_reached[offset: offset + size] for node, offset, size in connections.sources}

    def _axon_bits(self, synapses: np.ndarray, core_sizes: np.ndarray) -> np.ndarray:
        """Synapse memory of input axons with `synapses` synapses each into cores of `core_sizes` compartments, in
        the smaller of the sparse format (weight and compartment index per synapse) and the dense one (a weight
        for every compartment of the core)."""
        fmt = self.format
        needed = np.maximum(1, np.ceil(np.log2(np.maximum(core_sizes, 2)))).astype(np.int64)
        widths = np.sort(np.asarray(fmt.get("index_bits", []), np.int64))
        index_bits = np.maximum(needed, widths[np.minimum(np.searchsorted(widths, needed), len(widths) - 1)]) if len(widths) else needed

        def blocks(count, bits_per_weight):
            full, rest = np.divmod(count, fmt["synapses_per_block"])
            words = lambda bits: -(-bits // fmt["word_bits"]) * fmt["word_bits"]
            return (full * words(fmt["synapses_per_block"] * bits_per_weight + fmt["block_header_bits"])
                    + (rest > 0) * words(rest * bits_per_weight + fmt["block_header_bits"]))

        return np.minimum(blocks(synapses, fmt["weight_bits"] + index_bits), blocks(core_sizes, fmt["weight_bits"]))

    def _reason(self, layer: Layer, cores: int, usage: dict, fits: bool, has_synapses: bool, atom: int) -> str:
        """What sets the layer's core count, or why it does not fit, in words."""
        share = {k: v.max() / self.limits[CORE_LIMITS[k][0]] for k, v in usage.items() if CORE_LIMITS[k][0] in self.limits}
        key = max(share, key=share.get)
        limit = _amount(key, self.limits[CORE_LIMITS[key][0]])
        if not fits:
            fewest = "one neuron" if atom == 1 else f"{atom} neurons"
            return (f"does not fit: even {fewest} per core need{'s' if atom == 1 else ''} {_amount(key, usage[key].max())} "
                    f"{CORE_LIMITS[key][1]} (limit {limit} per core)")
        by_compartments = math.ceil(layer.neurons / self.limits["compartments_per_core"])
        reasons = [f"{layer.neurons} compartments" if cores == by_compartments else
                   f"{CORE_LIMITS[key][1]}: up to {_amount(key, usage[key].max())} of {limit} per core"
                   + (f", {_amount(key, usage[key].sum())} in all" if key == "synapse_bits" else "")
                   + f" (compartments alone would need {by_compartments})"
                   + (f"; cores take whole runs of {atom} neurons" if atom > 1 else "")]
        if len(layer.nodes) > 1:
            reasons.append(f"{layer.units} group neurons × {len(layer.nodes)} binary members")
        if not has_synapses and not layer.readout:
            reasons.append("input currents from the host (the layer reads the analog input)")
        return "; ".join(reasons)


class Connections:
    """A layer's synapses from each source neuron, per atom (a run of `atom` consecutive neurons in placement
    order), as sparse (atom, source neuron, synapses) triples: one backward pass per batch of atoms gives every
    split of the layer into cores of whole atoms. Atoms are single neurons for layers up to ATOMS_PER_LAYER
    neurons, else the power of two that keeps about that many atoms."""

    def __init__(self, kernels: StructuralKernels, layer: Layer, rank: np.ndarray, destination_cores: dict[str, np.ndarray]):
        by_rank = np.argsort(rank.reshape(-1))
        self.atom = 2 ** max(0, math.floor(math.log2(max(1, layer.neurons // ATOMS_PER_LAYER))))
        self.atoms = math.ceil(layer.neurons / self.atom)
        if not layer.readout:
            self.thresholds = np.stack([np.asarray(kernels.graph.nodes[n].v_threshold).reshape(-1) for n in layer.nodes]).reshape(-1)[by_rank]
            self.destination_cores = np.stack([destination_cores[n] for n in layer.nodes]).reshape(-1)[by_rank]
        self.sources: list[tuple[str, int, int]] = []  # (source node, offset of its neurons, neurons)
        atoms, columns, counts = [], [], []
        atom_of = rank // self.atom
        for first in range(0, self.atoms, ATOMS_PER_BATCH):
            batch = np.arange(first, min(first + ATOMS_PER_BATCH, self.atoms))
            seeds = {node: torch.from_numpy(atom_of[i][None] == batch[:, None]).reshape(-1, *layer.shape).to(COUNT_DTYPE)
                     for i, node in enumerate(layer.nodes)}
            for source, paths in kernels.paths_back(seeds)[0].items():
                if source not in destination_cores:  # the analog input: currents from the host
                    continue
                offset = self._offset(source, int(np.prod(paths.shape[1:])))
                synapses = exact_counts(paths).reshape(len(batch), -1)
                row, column = np.nonzero(synapses)
                atoms.append(batch[row])
                columns.append(offset + column)
                counts.append(synapses[row, column])
        self.sources_total = sum(size for _, _, size in self.sources)
        join = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)
        by_atom = np.argsort(join(atoms), kind="stable")  # each batch lists its sources one after another
        self.atom_of_pair, self.column, self.count = join(atoms)[by_atom], join(columns)[by_atom], join(counts)[by_atom]

    def _offset(self, source: str, size: int) -> int:
        for name, offset, _ in self.sources:
            if name == source:
                return offset
        offset = sum(n for _, _, n in self.sources)
        self.sources.append((source, offset, size))
        return offset

    def per_core(self, atoms_per_core: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For every (core, source neuron) pair with synapses: the core, the source neuron and the synapses.
        The triples are ordered by atom, so each core's are one run; a dense count per core merges its atoms."""
        bounds = np.searchsorted(self.atom_of_pair, np.arange(0, self.atoms + atoms_per_core, atoms_per_core))
        cores, sources, synapses = [], [], []
        for core, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            per_source = np.bincount(self.column[a:b], weights=self.count[a:b], minlength=self.sources_total)
            (reached,) = np.nonzero(per_source)
            cores.append(np.full(len(reached), core))
            sources.append(reached)
            synapses.append(per_source[reached].astype(np.int64))
        join = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return join(cores), join(sources), join(synapses)


def _placement_order(layer: Layer, channels_last: bool) -> np.ndarray:
    """Each neuron's place in the order cores are filled, shape (members, units), a group's members side by side.
    Channels last (as nengo-loihi places convolutions) keeps a core on a patch of positions, so it needs few inputs
    and its neurons reach few cores; channels first keeps few channels, hence few thresholds, on a core."""
    channels, positions, members = layer.shape[0], math.prod(layer.shape[1:]), len(layer.nodes)
    member = np.arange(members)[:, None, None]
    channel = np.arange(channels)[None, :, None]
    position = np.arange(positions)[None, None, :]
    rank = ((position * members + member) * channels + channel if channels_last
            else (channel * positions + position) * members + member)
    return rank.reshape(members, -1)
