"""`snnc sweep` on a local Ray (2 CPUs): every row equals a plain `snnc.compile` of its configuration, sharded rows
merge to the unsharded figures, a worker killed mid-task is retried without a duplicate row, an interrupted sweep
resumes from OUTDIR/cache, and without Ray the command says in one line how to get it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import snnc
from toolchain import cli
from toolchain.report.sweep import pareto_front, points, recommendations
from toolchain.sweep import CRASH_ONCE_VARIABLE, RAY_MISSING, configurations, sweep

from tests.conftest import ROOT, ZOO

ray = pytest.importorskip("ray")

MODEL = ZOO / "digits_mlp_relu.onnx"
SAMPLES = 60
STEPS = (1, 2, 4)
SNNC = [sys.executable, "-m", "toolchain.cli"]
CRASHED = "gn tau=2 loihi"  # only the killed-worker test sweeps this configuration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray for the whole file; its workers inherit the crash hook for CRASHED (once, via a marker file)."""
    marker = tmp_path_factory.mktemp("crash") / "crashed"
    os.environ[CRASH_ONCE_VARIABLE] = f"{CRASHED}:{marker}"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield {"address": ray.get_runtime_context().gcs_address, "marker": marker}
    ray.shutdown()
    os.environ.pop(CRASH_ONCE_VARIABLE, None)


def plain_compile(row: dict) -> dict:
    """The reference target's report entry and energy of one configuration, compiled on its own."""
    extra = {} if row["tau"] is None else {"tau": row["tau"]}
    report = snnc.compile(MODEL, neuron=row["neuron"], data="digits", timesteps=STEPS, samples=SAMPLES, threads=1,
                          precision=row["precision"], **extra).report
    return report


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def uninterrupted(cluster, tmp_path_factory):
    """if, gn τ=2,4 and parallel at float precision, one task per configuration."""
    out = tmp_path_factory.mktemp("sweep") / "whole"
    return sweep(MODEL, data="digits", neurons="if,gn,parallel", taus="2,4", timesteps=STEPS, samples=SAMPLES,
                 outdir=out, echo=quiet), out


def test_configurations_take_tau_only_where_the_model_has_it():
    labels = [c.label for c in configurations("if,gn,parallel", "2,4", "float,loihi")]
    assert labels == ["if float", "if loihi", "gn tau=2 float", "gn tau=2 loihi", "gn tau=4 float", "gn tau=4 loihi",
                      "parallel float", "parallel loihi"]


def test_every_row_equals_a_plain_compile(uninterrupted):
    result, out = uninterrupted
    assert [(r["neuron"], r["tau"], r["precision"]) for r in result["rows"]] == [
        ("if", None, "float"), ("gn", 2, "float"), ("gn", 4, "float"), ("parallel", None, "float")]
    for row in result["rows"]:
        report = plain_compile(row)
        reference = report["targets"]["reference"]
        assert row["accuracy"] == reference["accuracy"]
        assert row["spikes_per_inference"] == reference["spikes_per_inference"]
        assert row["latency_steps"] == reference["latency_steps"]
        assert row["ann_accuracy"] == report["ann"]["accuracy"]
        assert {name: entry["snn"] for name, entry in row["energy_pj"].items()} == {
            name: model["snn_pj"] for name, model in report["energy"].items()}
    assert json.loads((out / "sweep.json").read_text())["rows"] == result["rows"]
    assert len(list((out / "cache").glob("*.json"))) == len(result["rows"])


def test_shards_merge_to_the_unsharded_rows(cluster, uninterrupted, tmp_path):
    whole, _ = uninterrupted
    sharded = sweep(MODEL, data="digits", neurons="if,gn,parallel", taus="2,4", timesteps=STEPS, samples=SAMPLES,
                    shard_size=25, echo=quiet)
    for row, expected in zip(sharded["rows"], whole["rows"], strict=True):
        assert row["accuracy"] == expected["accuracy"]  # counted back from each shard: exact
        assert row["spikes_per_inference"] == pytest.approx(expected["spikes_per_inference"], rel=1e-12)
        for name, entry in row["energy_pj"].items():
            assert entry["snn"] == pytest.approx(expected["energy_pj"][name]["snn"], rel=1e-12)


def test_a_killed_worker_is_retried_and_its_row_appears_once(cluster, tmp_path):
    assert not cluster["marker"].exists()
    crashed = sweep(MODEL, data="digits", neurons="if,gn", taus="2", precisions="loihi", timesteps=STEPS, samples=SAMPLES,
                    outdir=tmp_path / "crashed", echo=quiet)
    assert cluster["marker"].exists(), "the hook did not end the worker: the test proves nothing"
    assert [(r["neuron"], r["tau"]) for r in crashed["rows"]] == [("if", None), ("gn", 2)]
    again = sweep(MODEL, data="digits", neurons="if,gn", taus="2", precisions="loihi", timesteps=STEPS, samples=SAMPLES,
                  outdir=tmp_path / "again", echo=quiet)
    assert crashed["rows"] == again["rows"]
    reference = plain_compile(crashed["rows"][1])["targets"]["reference"]
    assert crashed["rows"][1]["accuracy"] == reference["accuracy"]


def test_an_interrupted_sweep_resumes_from_its_cache(cluster, tmp_path):
    """gn finishes about a second before parallel (distribution-aware calibration for every T ≠ 8): the sweep is
    stopped by Ctrl-C once gn's row is cached, and the same sweep again runs only parallel."""
    model, neuron_names, taus, steps = ZOO / "digits_cnn_qcfs8.onnx", "gn,parallel", "2", "1,2,4,16"
    out = tmp_path / "resumed"
    command = [*SNNC, "sweep", str(model), "--data", "digits", "--neurons", neuron_names, "--tau", taus, "--timesteps", steps,
               "--samples", str(SAMPLES), "--address", cluster["address"], "-o", str(out)]
    # A background parent ignores SIGINT, and its children inherit that: restore the default in the child.
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((out / "cache").glob("*.json")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    cached = sorted(p.name for p in (out / "cache").glob("*.json"))
    assert child.returncode == 130, stderr
    assert "the same command resumes the sweep" in stderr
    assert len(cached) == 1, "the sweep was not stopped partway"
    assert not (out / "sweep.json").exists()
    mtime = (out / "cache" / cached[0]).stat().st_mtime_ns
    lines = []
    arguments = dict(data="digits", neurons=neuron_names, taus=taus, timesteps=steps, samples=SAMPLES)
    resumed = sweep(model, outdir=out, echo=lines.append, **arguments)
    assert f"1 of 2 configurations found in {out}/cache: skipped" in lines
    assert (out / "cache" / cached[0]).stat().st_mtime_ns == mtime  # not run again
    assert len(list((out / "cache").glob("*.json"))) == 2
    whole = sweep(model, echo=quiet, **arguments)
    assert resumed["rows"] == whole["rows"]
    assert json.loads((out / "sweep.json").read_text())["rows"] == whole["rows"]


def test_other_targets_and_their_checks_enter_the_row(cluster):
    """Lava on its first few samples (a target option), checked against the reference at Loihi precision."""
    result = sweep(MODEL, data="digits", neurons="gn", taus="2", timesteps=(4,), samples=20, targets="reference,lava",
                   lava_samples=4, echo=quiet)
    (row,) = result["rows"]
    report = snnc.compile(MODEL, neuron="gn", tau=2, data="digits", timesteps=(4,), samples=20, threads=1,
                          targets="reference,lava", lava_samples=4).report
    assert row["targets"]["lava"] == {"precision": "loihi", "samples": 4, "accuracy": report["targets"]["lava"]["accuracy"]}
    assert row["checks_passed"] == {check["name"]: check["passed"] for check in report["checks"]} == {"lava vs reference": True}


def test_without_ray_sweep_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code = cli.main(["sweep", str(MODEL), "--data", "digits", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"snnc: error: {RAY_MISSING}\n"
    assert "pip install 'snnc[sweep]'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,message", [
    (["--neurons", "if,lif"], "unknown neuron model 'lif'"),
    (["--precision", "double"], "unknown precision 'double'"),
    (["--tau", "0"], "positive integers"),
    (["--max-loss", "-1"], "--max-loss must be"),
])
def test_bad_sweep_options_are_one_line_and_exit_2(capsys, tmp_path, args, message):
    code = cli.main(["sweep", str(MODEL), "--data", "digits", *args, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def _row(name: str, accuracy: dict, energy: dict, latency: dict) -> dict:
    return {"neuron": name, "tau": None, "precision": "float", "timesteps": [int(t) for t in accuracy], "accuracy": accuracy,
            "latency_steps": latency, "spikes_per_inference": {t: 0.0 for t in accuracy},
            "energy_pj": {"chip": {"chip": "Chip", "label": "Chip", "regime": "chip model", "ann": 1.0, "snn": energy}}}


def test_the_recommendation_is_the_cheapest_point_within_the_budget():
    rows = [_row("a", {"1": 0.90, "4": 0.97}, {"1": 1.0, "4": 4.0}, {"1": 1, "4": 4}),
            _row("b", {"1": 0.95, "4": 0.99}, {"1": 2.0, "4": 8.0}, {"1": 2, "4": 8})]
    (tight,) = recommendations(rows, 0.99, 1.0)
    assert tight["configuration"] == {"neuron": "b", "tau": None, "precision": "float", "timesteps": 4}
    (loose,) = recommendations(rows, 0.99, 3.0)  # a at T=4 (97 %) is within 3 points and costs half of b at T=4
    assert loose["configuration"]["neuron"] == "a" and loose["configuration"]["timesteps"] == 4
    (none,) = recommendations(rows, 1.0, 0.5)
    assert none["configuration"] is None and "no configuration" in none["sentence"]
    front = pareto_front(points(rows), lambda p: p.energy("chip"))
    assert [(p.row["neuron"], p.timesteps) for p in front] == [("a", 1), ("b", 1), ("a", 4), ("b", 4)]
    for kept in front:  # nothing is cheaper and at least as accurate, or as cheap and more accurate
        assert not any(q.energy("chip") < kept.energy("chip") and q.accuracy >= kept.accuracy or
                       q.energy("chip") == kept.energy("chip") and q.accuracy > kept.accuracy for q in points(rows))


def test_the_report_leads_with_the_recommendations(uninterrupted):
    result, out = uninterrupted
    text = (out / "sweep.md").read_text().splitlines()
    assert text[2:2 + len(result["recommendations"])] == [f"- {r['sentence']}" for r in result["recommendations"]]
    html = (out / "sweep.html").read_text()
    assert html.count("<svg") == len(result["rows"][0]["energy_pj"]) + 1  # a front per cost model, and latency
