"""The `snnc` command line: compile, inspect, run, sweep, report."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from toolchain.errors import SnncError

CHECK_FAILED = 1  # the compile worked but a target disagreed with the reference; the report says where


class Terminated(BaseException):
    """SIGTERM arrived (a job scheduler, `timeout`, `kill`); raised so that staged output is cleaned up."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def sigterm_raises():
    """While the command runs, SIGTERM raises Terminated; the handler before is restored after (for in-process callers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, at least 1 (got '{value}')")
    return number


def _percentile(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentile in (0, 100] (got '{value}')")
    return number


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in snnc's one-line form (argparse prints the whole usage first)."""

    def error(self, message: str):
        print(f"snnc: error: {message}; see '{self.prog} --help'", file=sys.stderr)
        sys.exit(SnncError.exit_code)


def _add_options(parser: argparse.ArgumentParser, options) -> None:
    """The declared options of neuron models or targets as flags; absent flags stay absent (their defaults are
    the models' and targets' own)."""
    for option in options:
        kind = _positive if option.minimum is not None else option.type
        parser.add_argument(option.flag, type=kind, default=argparse.SUPPRESS, help=option.help, dest=option.name,
                            **({"choices": option.choices} if option.choices else {}))


def _parser() -> argparse.ArgumentParser:
    import targets
    from toolchain import neurons
    from targets.reference.runtime import DEVICES
    from toolchain.frontend.onnx_import import MAXPOOL_MODES

    parser = _Parser(prog="snnc", description="Compile trained ANNs (ONNX) into spiking neural networks.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    # Each command also takes --debug; its default is SUPPRESS so that it does not reset `snnc --debug COMMAND`.
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default="digits", help="built-in dataset (digits, mnist5k, fashion) or a .npz with x and y (default: digits)")
    common.add_argument("--timesteps", default="1,2,4,8,16,32,64", help="time steps T to report, comma separated (default: 1,2,4,8,16,32,64)")
    common.add_argument("--samples", type=_positive, default=None, help="evaluate only the first N test samples")
    common.add_argument("--threads", type=_positive, default=min(2, os.cpu_count() or 1), help="CPU threads for torch and onnxruntime (default: 2)")
    common.add_argument("--batch-size", type=_positive, default=None, help="samples per simulation batch (default: chosen to bound memory)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    comp = commands.add_parser("compile", parents=[common], help="convert an ONNX model to an SNN, run it on the targets, report")
    comp.add_argument("model", help="the trained ANN as .onnx")
    comp.add_argument("--neuron", default="if", choices=neurons.model_names(), help="spiking neuron model (default: if)")
    comp.add_argument("--target", default="reference", help=f"comma-separated targets from {', '.join(targets.registry())} (default: reference)")
    comp.add_argument("-o", "--output", default="out", help="output folder (default: out); replaced only when the compile succeeds")
    comp.add_argument("--percentile", type=_percentile, default=99.9, help="percentile of ReLU activations used as threshold (default: 99.9)")
    comp.add_argument("--per-channel", action="store_true", help="calibrate ReLU thresholds per channel instead of per layer")
    comp.add_argument("--calibration-samples", type=_positive, default=1000, help="training samples used to calibrate ReLU thresholds (default: 1000)")
    comp.add_argument("--maxpool", default="spiking", choices=MAXPOOL_MODES,
                      help="MaxPool handling: spiking (default: max pooling of spike counts, docs/maxpool.md), avg (replace by "
                      "average pooling) or error")
    comp.add_argument("--no-snn-calibration", dest="snn_calibration", action="store_false",
                      help="skip the bias correction of plain-ReLU networks with if or gn neurons (on by default)")
    comp.add_argument("--drop-lrn", action="store_true", help="remove LRN nodes (no spiking equivalent) instead of refusing the model")
    _add_options(comp.add_argument_group("neuron model options (each applies to the models that declare it)"), neurons.all_options().values())
    _add_options(comp.add_argument_group("target options"), targets.all_options().values())

    insp = commands.add_parser("inspect", help="list an ONNX model's nodes, shapes and snnc support")
    insp.add_argument("model", help="the ONNX model")
    insp.add_argument("--maxpool", default="spiking", choices=MAXPOOL_MODES, help="MaxPool handling to assume (default: spiking)")
    insp.add_argument("--drop-lrn", action="store_true", help="assume LRN nodes are removed")
    insp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    run = commands.add_parser("run", parents=[common], help="run a model.nir on the reference runtime")
    run.add_argument("nir_file", help="a NIR file written by snnc compile (or another NIR exporter)")
    run.add_argument("-o", "--output", default=None, help="write report.json into this folder")
    run.add_argument("--device", default="auto", choices=DEVICES,
                     help="where the reference runtime computes: cpu, cuda, or auto (cuda when torch sees one; default)")

    swp = commands.add_parser("sweep", parents=[common], help="compile and evaluate neuron × tau × T × precision on Ray; "
                              "recommend the cheapest configuration within an accuracy budget")
    swp.add_argument("model", help="the trained ANN as .onnx")
    swp.add_argument("--neurons", default="if,gn,parallel", help=f"comma-separated neuron models from {', '.join(neurons.model_names())} "
                     "(default: if,gn,parallel)")
    swp.add_argument("--tau", default="2,4,8", help="comma-separated tau values for models that take one (gn); the others "
                     "run once (default: 2,4,8)")
    swp.add_argument("--precision", dest="precisions", metavar="PRECISIONS", default="float", help="comma-separated precisions of the reference runtime: float, loihi (default: float)")
    swp.add_argument("--targets", dest="target_names", metavar="TARGETS", default="reference", help=f"comma-separated targets from {', '.join(targets.registry())} "
                     "(default: reference)")
    swp.add_argument("--max-loss", type=float, default=1.0, help="accuracy budget: points below the ANN a recommended "
                     "configuration may lose (default: 1.0)")
    swp.add_argument("--address", default=None, help="join the Ray cluster at this address (default: start a local Ray)")
    swp.add_argument("--cpus", type=_positive, default=None, help="CPUs of the local Ray (default: 2, at most the machine's)")
    swp.add_argument("--shard-size", type=_positive, default=None, help="test samples per task; larger test sets are split "
                     "and merged (default: one task per configuration)")
    _add_options(swp.add_argument_group("target options"), [o for o in targets.all_options().values() if o.name != "precision"])
    swp.add_argument("-o", "--output", default="out", help="output folder (default: out): sweep.json, sweep.md, sweep.html "
                     "and cache/, from which a sweep started again skips finished configurations")

    rep = commands.add_parser("report", help="render OUTDIR/report.md and OUTDIR/report.html again from OUTDIR/report.json")
    rep.add_argument("outdir", help="an output folder of snnc compile")
    rep.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _compile(args) -> int:
    import targets
    from toolchain import neurons
    from toolchain.api import compile_model
    from toolchain.options import CompileOptions

    given = vars(args)
    options = CompileOptions(
        neuron=args.neuron, targets=args.target, timesteps=args.timesteps, data=args.data, percentile=args.percentile,
        per_channel=args.per_channel, calibration_samples=args.calibration_samples, samples=args.samples,
        maxpool=args.maxpool, snn_calibration=args.snn_calibration, drop_lrn=args.drop_lrn, threads=args.threads, batch_size=args.batch_size,
        neuron_options={k: given[k] for k in neurons.all_options() if k in given},
        target_options={k: given[k] for k in targets.all_options() if k in given},
    )
    report = compile_model(args.model, args.output, options)
    failed = [c["name"] for c in report.get("checks", []) if not c["passed"]]
    if failed:
        print(f"snnc: check failed: {', '.join(failed)} (see {args.output}/report.md)", file=sys.stderr)
        return CHECK_FAILED
    return 0


def _inspect(args) -> int:
    from toolchain.inspect import inspect_model

    text, converts = inspect_model(args.model, args.maxpool, args.drop_lrn)
    print(text)
    return 0 if converts else 2


def _run(args) -> int:
    from toolchain.api import run_nir_file

    run_nir_file(args.nir_file, args.data, args.timesteps, args.output, args.samples, args.threads, args.batch_size,
                 device=args.device)
    return 0


def _sweep(args) -> int:
    import targets
    from toolchain.sweep import require_ray, sweep

    require_ray()
    given = vars(args)
    target_options = {k: given[k] for k in targets.all_options() if k in given}
    try:
        sweep(args.model, data=args.data, neurons=args.neurons, taus=args.tau, timesteps=args.timesteps, precisions=args.precisions,
              targets=args.target_names, max_loss=args.max_loss, samples=args.samples, shard_size=args.shard_size,
              address=args.address, num_cpus=args.cpus, outdir=args.output, threads=args.threads, batch_size=args.batch_size,
              **target_options)
    except (KeyboardInterrupt, Terminated) as stop:
        signum, word = (signal.SIGINT, "interrupted") if isinstance(stop, KeyboardInterrupt) else (signal.SIGTERM, "terminated")
        print(f"snnc: {word}; finished configurations are kept in {args.output}/cache: the same command resumes the sweep",
              file=sys.stderr)
        return 128 + signum
    return 0


def _report(args) -> int:
    from toolchain.report import rerender

    print("wrote " + ", ".join(str(path) for path in rerender(args.outdir)))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:  # Ctrl-C may come while the parser imports torch, before any command runs
        with sigterm_raises():
            args = _parser().parse_args(argv)
            try:
                return {"compile": _compile, "inspect": _inspect, "run": _run, "sweep": _sweep, "report": _report}[args.command](args)
            except SnncError as err:
                if args.debug:
                    raise
                print(f"snnc: error: {err}", file=sys.stderr)
                return SnncError.exit_code
    except KeyboardInterrupt:
        return _stopped(signal.SIGINT, "interrupted")
    except Terminated:
        return _stopped(signal.SIGTERM, "terminated")


def _stopped(signum: int, word: str) -> int:
    print(f"snnc: {word}; no output was written", file=sys.stderr)
    return 128 + signum


def entry() -> None:
    """The `snnc` command. A Ctrl-C that passed through Python code run from a C library leaves CPython's
    'unhandled KeyboardInterrupt' mark set even though main() handled it, and the interpreter then ends itself by
    SIGINT instead of exiting 130 (seen with strace: kill(getpid(), SIGINT) after the message). Once the command
    has stopped and cleaned up, its status is final, so it leaves at once."""
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
