"""What a compiled network costs: exact operation counts (operations.py), energy per inference under published
cost models (energy.py) and whether it fits on a chip (resources.py), from the chip data in toolchain/chips/."""

from toolchain.costs.energy import energy_report
from toolchain.costs.operations import Structure, structure_of, synaptic_operations
from toolchain.costs.resources import resource_report

__all__ = ["Structure", "energy_report", "resource_report", "structure_of", "synaptic_operations"]
