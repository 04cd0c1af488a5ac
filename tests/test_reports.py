"""Reports people read: report.json's operation counts, energy and chip fit, a self-contained report.html, and
`snnc report` re-rendering them; counts are checked against the architecture and the run's spikes."""

import json
import re
import subprocess
import sys

from toolchain.cli import main

SNNC = [sys.executable, "-m", "toolchain.cli"]


def test_compile_reports_operations_energy_and_cores_and_report_rerenders(tmp_path, zoo, capsys):
    out = tmp_path / "out"
    compiled = subprocess.run([*SNNC, "compile", str(zoo / "digits_cnn_qcfs8.onnx"), "--neuron", "gn", "--timesteps", "2,4",
                               "--data", "digits", "--samples", "40", "-o", str(out)], capture_output=True, text=True, timeout=900)
    assert compiled.returncode == 0, compiled.stderr
    report = json.loads((out / "report.json").read_text())
    reference = report["targets"]["reference"]
    # conv 1→16 and 16→32 (3x3, padded, 8x8), fc 512→64 and 64→10 (models/zoo/digits_cnn_qcfs8.md)
    assert reference["macs"] == {"gn1": 16 * 64 * 9, "gn2": 32 * 64 * 16 * 9, "gn3": 64 * 512, "readout": 10 * 64}
    assert reference["input_macs_per_step"] == {"gn1": 16 * 64 * 9, "gn2": 0, "gn3": 0, "readout": 0}
    spikes = reference["spikes_per_layer"]
    # dense fc2: every gn3 spike reaches 10 outputs; gn2 → 2x2 pool (stride 2) → fc1: every gn2 spike reaches 64
    assert reference["synops"]["readout"] == 10 * spikes["gn3"] and reference["synops"]["gn3"] == 64 * spikes["gn2"]
    assert reference["synops"]["gn1"] == 0 and all(isinstance(v, int) for v in reference["synops"].values())
    assert reference["graded_synops"]["gn2"] <= reference["synops"]["gn2"]
    energy = report["energy"]
    assert {"cmos45-fp32", "cmos45-int8", "loihi1", "spinnaker2", "truenorth"} <= set(energy)
    assert all(model["source"] and model["regime"] for model in energy.values())
    assert abs(energy["cmos45-fp32"]["ann_pj"] - 4.6 * sum(reference["macs"].values())) < 1e-6
    loihi = report["resources"]["loihi1"]
    assert isinstance(loihi["cores"], int) and loihi["cores"] > 0 and len(loihi["layers"]) == 4
    assert report["resources"]["speck"]["fits"] and report["resources"]["loihi2"]["fits"]

    page = (out / "report.html").read_text()
    assert page.count("<svg") >= 4 and "<script" not in page
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", page)  # nothing loaded from elsewhere
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").read_text() == page
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "report.json does not exist" in error[0]
