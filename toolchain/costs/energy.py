"""Energy per inference of the ANN and of the SNN under every cost model in toolchain/chips/ (docs/energy.md).

Per inference, with MACs the ANN's multiply-accumulates, U its units (neurons and outputs), M_in the MACs per
step of the SNN's input layer (weighted nodes on the analog input), E(T) the synaptic events of spikes after T
steps, N the SNN's neurons (updated every step) and S(T) its spikes:

    ANN    = e_mac · MACs + (e_neuron + e_spike) · U
    SNN(T) = e_mac · M_in · T + e_event · E(T) + e_neuron · N · T + e_spike · S(T)

Compute only (45 nm CMOS): e_mac = MAC, e_event = add (an accumulate), no neuron or spike term, as the literature
counts. Chip model: e_mac = e_event = the chip's synaptic operation (a MAC is one synaptic operation with a
graded payload; the ANN runs as one step in which every synapse carries one event and every unit updates and
sends once, as keras-spiking models non-spiking networks on a spiking device), plus the chip's neuron-update
and spike energies where published. The input layer is computed at every step (the input is applied at every
step); `snn_pj_input_once` charges it once instead, as a host that caches it would.

Break-even: the spikes per synapse s at which the SNN costs what the ANN costs, the other terms as measured:
    s* = (ANN − (SNN(T) − e_event · E(T))) / (e_event · synapses);  measured s = E(T) / synapses.
s* ≤ 0 means the input layer and neuron updates alone already cost more than the ANN.
"""

from __future__ import annotations

from toolchain.chips import value

COMPONENTS = ("input layer", "synaptic events", "neuron updates", "spikes")


def energy_report(entry: dict, chips: dict[str, dict]) -> dict[str, dict]:
    """One entry per cost model of every chip, from a target's report entry (its operation counts)."""
    return {model["name"]: _model_entry(chip, model, entry)
            for chip in chips.values() for model in chip.get("cost_models", [])}


def per_operation_pj(model: dict) -> dict[str, float]:
    """The energy of each counted operation under a cost model (0 where the model does not charge it)."""
    compute_only = "mac_pj" in model
    synaptic_op = value(model["synaptic_op_pj"]) if "synaptic_op_pj" in model else None
    return {
        "mac": value(model["mac_pj"]) if compute_only else synaptic_op,
        "synaptic event": value(model["add_pj"]) if compute_only else synaptic_op,
        "neuron update": value(model["neuron_update_pj"]) if "neuron_update_pj" in model else 0.0,
        "spike": value(model["spike_pj"]) if "spike_pj" in model else 0.0,
    }


def _model_entry(chip: dict, model: dict, entry: dict) -> dict:
    pj = per_operation_pj(model)
    units, neurons = sum(entry["ann_units"].values()), sum(entry["neurons"].values())
    input_macs, synapses = sum(entry["input_macs_per_step"].values()), sum(entry["synapses"].values())
    ann = pj["mac"] * sum(entry["macs"].values()) + (pj["neuron update"] + pj["spike"]) * units
    snn, once, breakdown, per_synapse, break_even = {}, {}, {}, {}, {}
    for key, events in entry["synops_per_inference"].items():
        t = int(key)
        parts = dict(zip(COMPONENTS, (pj["mac"] * input_macs * t, pj["synaptic event"] * events,
                                      pj["neuron update"] * neurons * t, pj["spike"] * entry["spikes_per_inference"][key])))
        snn[key] = sum(parts.values())
        once[key] = snn[key] - pj["mac"] * input_macs * (t - 1)
        breakdown[key] = parts
        per_synapse[key] = events / synapses if synapses else 0.0
        fixed = snn[key] - parts["synaptic events"]
        break_even[key] = (ann - fixed) / (pj["synaptic event"] * synapses) if synapses else 0.0
    charged = [k for k in ("mac_pj", "add_pj", "synaptic_op_pj", "neuron_update_pj", "spike_pj") if k in model]
    return {
        "label": model["label"], "chip": chip["name"], "regime": model["regime"],
        "source": "; ".join(dict.fromkeys(model[k]["source"] for k in charged)),
        "per_operation_pj": pj, "ann_pj": ann, "snn_pj": snn, "snn_pj_input_once": once, "breakdown_pj": breakdown,
        "spikes_per_synapse": per_synapse, "break_even_spikes_per_synapse": break_even,
    }
