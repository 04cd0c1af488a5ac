"""The middle end: one pass per file, each a function from one verified graph to the next."""

from toolchain.graph import AnnGraph, CANONICAL_OPS, verify
from toolchain.passes.calibrate_distribution import calibrate_distribution
from toolchain.passes.calibrate_thresholds import calibrate_thresholds
from toolchain.passes.compose_linear_chains import compose_linear_chains
from toolchain.passes.expand_group_neurons import expand_group_neurons
from toolchain.passes.fold_channel_affine import fold_channel_affine
from toolchain.passes.lower_to_nir import lower_to_nir
from toolchain.passes.quantize_loihi import quantize_loihi
from toolchain.passes.recognise_activations import recognise_activations
from toolchain.passes.remove_identities import remove_identities


def canonicalise(graph: AnnGraph) -> AnnGraph:
    """Raw imported graph → canonical ANN graph of linear ops, activations, Add and Concat."""
    graph = fold_channel_affine(recognise_activations(remove_identities(graph)))
    return verify(graph, allowed_ops=CANONICAL_OPS)


__all__ = ["calibrate_distribution", "calibrate_thresholds", "canonicalise", "compose_linear_chains", "expand_group_neurons", "fold_channel_affine", "lower_to_nir", "quantize_loihi", "recognise_activations", "remove_identities"]
