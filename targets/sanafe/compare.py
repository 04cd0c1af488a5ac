"""SANA-FE's energy beside snnc's analytical Loihi estimate, component by component (docs/energy.md).

Both are given the same events: snnc's model is evaluated on the operation counts of the reference run in
SANA-FE's arithmetic, which spikes exactly as SANA-FE did. The components pair up as follows:

- synaptic events: snnc's `synaptic events` (23.6 pJ each) against SANA-FE's `synapse` (24.0, 33.6 or 35.5 pJ per
  event for convolutional, sparse and dense synapses);
- neurons: snnc's `neuron updates` (81 pJ per neuron and step) against SANA-FE's `soma` without its spike part
  (51.2 + 21.6 pJ per neuron it updates: a neuron with no bias, no input and no potential is skipped);
- spikes: snnc's `spikes` (1.7 pJ) against SANA-FE's spike generation (69.3 pJ, in `soma`) and `network`
  (111 pJ per message sent plus 3.0–4.2 pJ per mesh hop);
- input layer: snnc charges the first layer's MACs on the chip at every step; SANA-FE gets those currents from
  the host as biases and charges nothing for them.
"""

from __future__ import annotations

SPIKE_OUT_J = 69.3e-12  # SANA-FE's soma energy per spike generated (its Loihi description, after Davies et al. 2018)

PAIRS = ("input layer", "synaptic events", "neuron updates", "spikes")


def sanafe_components(costs: dict, spikes_per_inference: float) -> dict[str, float]:
    """SANA-FE's energy per inference (joules) split into snnc's four components."""
    energy = costs["energy_j"]
    spiking = SPIKE_OUT_J * spikes_per_inference
    return {"input layer": 0.0, "synaptic events": energy["synapse"] + energy["dendrite"],
            "neuron updates": energy["soma"] - spiking, "spikes": spiking + energy["network"]}


def energy_comparison(costs: dict, snnc_model: dict, timesteps: int, spikes_per_inference: float) -> dict:
    """Per component, on chip (snnc without its input layer, which SANA-FE leaves to the host) and in total, in
    joules per inference: SANA-FE, snnc, and snnc's relative error."""
    sanafe = sanafe_components(costs, spikes_per_inference)
    snnc = {k: v * 1e-12 for k, v in snnc_model["breakdown_pj"][str(timesteps)].items()}
    rows = {k: {"sanafe_j": sanafe[k], "snnc_j": snnc[k]} for k in PAIRS}
    rows["on chip"] = {"sanafe_j": costs["energy_j"]["total"], "snnc_j": sum(snnc.values()) - snnc["input layer"]}
    rows["total"] = {"sanafe_j": costs["energy_j"]["total"], "snnc_j": sum(snnc.values())}
    for row in rows.values():
        row["snnc_relative_error"] = (row["snnc_j"] - row["sanafe_j"]) / row["sanafe_j"] if row["sanafe_j"] else None
    return rows
