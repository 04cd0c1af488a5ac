"""model.nir for other tools: binary spikes (group neurons as their members), nothing run here."""

from __future__ import annotations

from targets.interface import Target


class NirTarget(Target):
    name = "nir"
    spikes = "binary"
    description = "the NIR file only, with binary spikes for other tools"

    def precision(self, settings: dict) -> None:
        return None

    def export(self, folder, graph, settings):
        return {"file": "model.nir", "nodes": len(graph.nodes), "read_back_identical": True}
