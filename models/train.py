"""Train, export and document the snnc model zoo.

    python -m models.train NAME [NAME ...]   # one or more zoo models (see models/zoo_nets.py)
    python -m models.train --all             # every model, one after the other

Each run is reproducible: seed 0 for torch, numpy and the data order, single-process data feeding, and
deterministic torch algorithms. The trained network is exported to ``models/zoo/NAME.onnx`` (dynamo exporter at
opset 18, or for the models trained the usual way the TorchScript exporter at opset 13; symbolic batch dimension
``batch``), the exported file is checked (onnx.checker, onnxruntime at batch
sizes 1 and 7 against torch) and evaluated with onnxruntime on the dataset's test split, and the model card
``models/zoo/NAME.md`` is written from those measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models import zoo_nets
from models.zoo_nets import ZOO, QCFS, ZooEntry
from toolchain.data import Dataset, load_dataset

SEED = 0
OPSET = 18
TORCHSCRIPT_OPSET = 13  # what most published models were exported with (torch.onnx.export's long-time default)
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def seed_everything(seed: int = SEED) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv/linear weights only; never on biases, BatchNorm or QCFS thresholds."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight":
                decay.append(param)
            else:
                no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(entry: ZooEntry, data: Dataset, log=print) -> tuple[nn.Module, float, float, list[str]]:
    """Train one zoo model; returns the model (eval mode), training wall and CPU seconds, and the epoch log."""
    seed_everything()
    model = entry.build()
    x = torch.from_numpy(data.x_train.reshape(len(data.x_train), *entry.input_shape))
    y = torch.from_numpy(data.y_train)
    xt = torch.from_numpy(data.x_test.reshape(len(data.x_test), *entry.input_shape))
    yt = torch.from_numpy(data.y_test)
    n = len(x)
    steps_per_epoch = math.ceil(n / entry.batch_size)
    total_steps = entry.epochs * steps_per_epoch
    optimizer = torch.optim.Adam(_param_groups(model, entry.weight_decay), lr=entry.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=entry.lr, total_steps=total_steps, pct_start=0.15, anneal_strategy="cos"
    )
    loss_fn = nn.CrossEntropyLoss()
    order_gen = torch.Generator().manual_seed(SEED)
    lines: list[str] = []
    train_seconds = cpu_seconds = 0.0
    for epoch in range(entry.epochs):
        model.train()
        start, cpu_start = time.perf_counter(), time.process_time()
        perm = torch.randperm(n, generator=order_gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, n, entry.batch_size):
            idx = perm[i : i + entry.batch_size]
            xb, yb = x[idx], y[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        train_seconds += time.perf_counter() - start
        cpu_seconds += time.process_time() - cpu_start
        # Monitoring only (never used to pick a checkpoint): the last epoch's weights are exported.
        test_acc = torch_accuracy(model, xt, yt)
        lams = " ".join(f"{float(m.lam):.3f}" for m in model.modules() if isinstance(m, QCFS))
        line = (
            f"epoch {epoch + 1:3d}/{entry.epochs}  loss {loss_sum / n:.4f}  train {100 * correct / n:6.2f}%  "
            f"test {100 * test_acc:6.2f}%  t {train_seconds:6.1f}s" + (f"  lambda {lams}" if lams else "")
        )
        lines.append(line)
        log(line)
    model.eval()
    return model, train_seconds, cpu_seconds, lines


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum()) for i in range(0, len(x), batch))
    model.train(was_training)
    return correct / len(x)


def export(model: nn.Module, entry: ZooEntry, path: Path) -> str:
    """Export with the entry's exporter (dynamo falls back to TorchScript); returns a description of the exporter."""
    example = (torch.rand(2, *entry.input_shape),)
    if entry.exporter == "torchscript":
        return export_torchscript(model, example, path, TORCHSCRIPT_OPSET)
    try:
        torch.onnx.export(
            model, example, str(path), dynamo=True, external_data=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False,
        )
        exporter = f"torch.onnx.export(dynamo=True) (torch {torch.__version__}, onnxscript optimizer on)"
    except Exception as err:  # noqa: BLE001 - any exporter failure falls back to the TorchScript exporter
        print(f"dynamo export failed ({type(err).__name__}: {err}); falling back to dynamo=False", file=sys.stderr)
        exporter = f"{export_torchscript(model, example, path, OPSET)}; dynamo failed: {err}"
    leftover = path.with_name(path.name + ".data")
    if leftover.exists():
        raise RuntimeError(f"{leftover}: the exporter wrote external data; the zoo needs self-contained files")
    return exporter


def export_torchscript(model: nn.Module, example: tuple, path: Path, opset: int) -> str:
    """The legacy TorchScript exporter with its defaults (constant folding on, which fuses eval-mode BatchNorm
    into the Conv before it); returns a description of the exporter."""
    torch.onnx.export(
        model, example, str(path), dynamo=False, opset_version=opset, do_constant_folding=True,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )
    return (f"torch.onnx.export(dynamo=False, opset_version={opset}, do_constant_folding=True) "
            f"(TorchScript, torch {torch.__version__})")


def maxpool_as_average(path: Path) -> onnx.ModelProto | None:
    """The model with every MaxPool replaced by AveragePool over the same windows, padding not counted (what
    `snnc --maxpool avg` computes); None when the model has no MaxPool."""
    proto = onnx.load(str(path))
    pools = [node for node in proto.graph.node if node.op_type == "MaxPool"]
    for node in pools:
        node.op_type = "AveragePool"
        window = [a for a in node.attribute if a.name in ("kernel_shape", "strides", "pads", "ceil_mode", "auto_pad")]
        del node.attribute[:]
        node.attribute.extend(window)
    return proto if pools else None


def check_onnx(path: Path, model: nn.Module, entry: ZooEntry) -> dict:
    """onnx.checker, symbolic batch, onnxruntime vs torch at batch sizes 1 and 7; returns graph facts."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch_dim.dim_param:
        raise RuntimeError(f"{path}: first input dimension is not symbolic ({batch_dim})")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1)
    max_diff = 0.0
    for batch in (1, 7):
        xb = torch.rand(batch, *entry.input_shape, generator=gen)
        got = session.run(None, {INPUT_NAME: xb.numpy()})[0]
        with torch.no_grad():
            want = model(xb).numpy()
        if got.shape != want.shape:
            raise RuntimeError(f"{path}: batch {batch} gives shape {got.shape}, torch {want.shape}")
        max_diff = max(max_diff, float(np.abs(got - want).max()))
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"ops": ops, "opset": opset, "max_diff": max_diff, "batch_param": batch_dim.dim_param,
            "nodes": [n.op_type for n in proto.graph.node]}


def onnx_accuracy(model: Path | bytes, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Accuracy of an ONNX file (path) or serialized model (bytes) with onnxruntime."""
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])
    correct = 0
    for i in range(0, len(x), batch):
        logits = session.run(None, {INPUT_NAME: x[i : i + batch]})[0]
        correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def add_metadata(path: Path, meta: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **meta})
    proto.doc_string = meta.get("snnc.description", "")
    onnx.save(proto, str(path))


def write_card(entry: ZooEntry, data: Dataset, model: nn.Module, facts: dict) -> str:
    qcfs = [(name, m) for name, m in model.named_modules() if isinstance(m, QCFS)]
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"# {entry.name}",
        "",
        f"ANN test accuracy (onnxruntime, `{entry.name}.onnx` on all {len(data.y_test)} test samples): "
        f"**{100 * facts['onnx_acc']:.2f} %**",
        "",
        "## Data",
        "",
        f"- dataset: `{entry.dataset}` from `toolchain.data.load_dataset(\"{entry.dataset}\")`",
        f"- split: {len(data.y_train)} train / {len(data.y_test)} test samples, {data.num_classes} classes; "
        "trained on `x_train`, evaluated on `x_test` only",
        f"- input: float32 `{INPUT_NAME}` of shape (batch, {', '.join(map(str, entry.input_shape))}), "
        "pixels in [0, 1], " + _normalisation(model) + "; output `logits` (batch, 10)",
        "",
        *_maxpool_line(facts),
        "## Architecture",
        "",
        f"{entry.description}",
        "",
        f"{n_params} trainable parameters (torch module: `models.zoo_nets.{entry.name}`).",
        "",
        "## Activation",
        "",
    ]
    if qcfs:
        lines += [
            "QCFS (Bu et al., ICLR 2022): `y = lam/L * clip(floor(x*L/lam + 1/2), 0, L)`, computed as "
            "`x/lam -> *L -> +0.5 -> floor -> /L -> clip(0,1) -> *lam`; straight-through gradient for floor "
            f"during training; one trainable scalar threshold per layer (initial value "
            f"{_lam_init():g}).",
            "",
            "| layer (torch module) | ONNX initializer | L | trained lambda |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{name}` | `{name}.lam` | {m.levels} | {m.lam.item():.6f} |" for name, m in qcfs]
    else:
        lines.append("ReLU (no quantisation).")
    lines += [
        "",
        "## Training",
        "",
        f"- optimizer: Adam, one-cycle cosine learning rate (max {entry.lr:g}, 15 % warm-up), "
        f"{entry.epochs} epochs, batch {entry.batch_size}, cross-entropy loss, "
        + (f"weight decay {entry.weight_decay:g} on conv/linear weights" if entry.weight_decay else "no weight decay")
        + ", no augmentation",
        f"- seed {SEED} (torch, numpy, python; data order from a torch.Generator seeded {SEED}); "
        "deterministic torch algorithms; the last epoch's weights are exported (no checkpoint selection)",
        f"- training wall time: {facts['train_seconds']:.1f} s on {entry.threads} CPU "
        f"thread{'s' if entry.threads > 1 else ''} "
        f"({platform.processor() or platform.machine()}, torch {torch.__version__}); process CPU time "
        f"{facts['cpu_seconds']:.1f} s (wall time grows when other work shares the cores; test-set "
        "monitoring after each epoch is not counted)",
        f"- final epoch: `{facts['log'][-1].strip()}`",
        "",
        "## Export",
        "",
        f"- exporter: {facts['exporter']}",
        f"- ONNX opset {facts['opset']}, IR version {facts['ir_version']}, symbolic batch dimension "
        f"`{facts['batch_param']}`; file size {facts['size']} bytes",
        "- eval-mode export: " + (_bn_folded_by(entry) + ", "
                                  if facts['ops'].get('BatchNormalization', 0) == 0 and _has_bn(model) else "")
        + ("Dropout dropped, " if any(isinstance(m, nn.Dropout) for m in model.modules())
           and "Dropout" not in facts["ops"] else "")
        + "no training-only ops",
        f"- ops: {', '.join(f'{op} x{k}' for op, k in facts['ops'].items())}",
        f"- node sequence: {' -> '.join(facts['nodes'])}",
        f"- checks: onnx.checker (full_check) passes; onnxruntime {ort.__version__} at batch sizes 1 and 7 "
        f"matches torch to {facts['max_diff']:.1e} (max abs logit difference)",
        f"- torch eval-mode test accuracy: {100 * facts['torch_acc']:.2f} %",
        "",
    ]
    return "\n".join(lines)


def _normalisation(model: nn.Module) -> str:
    norms = [m for m in model.modules() if isinstance(m, zoo_nets.Normalize)]
    if not norms:
        return "no normalisation"
    return f"normalised inside the model (`(x - {float(norms[0].mean):g}) / {float(norms[0].std):g}`: Sub, Div)"


def _maxpool_line(facts: dict) -> list[str]:
    if facts["maxpool_as_avg_acc"] is None:
        return []
    return [f"The same weights with every MaxPool replaced by AveragePool (same windows, padding not counted, as "
            f"`snnc --maxpool avg` does; onnxruntime, all test samples): {100 * facts['maxpool_as_avg_acc']:.2f} %", ""]


def _bn_folded_by(entry: ZooEntry) -> str:
    if entry.exporter == "torchscript":
        return "BatchNorm folded into the preceding Conv by the exporter (constant folding of eval-mode Conv+BN)"
    return "BatchNorm folded into the preceding Conv by the exporter's optimizer"


def _lam_init() -> float:
    return zoo_nets.QCFS_LAMBDA_INIT


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def run(name: str, out_dir: Path = ZOO_DIR, epochs: int | None = None) -> dict:
    entry = ZOO[name] if epochs is None else dataclasses.replace(ZOO[name], epochs=epochs)
    torch.set_num_threads(entry.threads)
    data = load_dataset(entry.dataset)
    print(f"== {name}: {entry.dataset} ({len(data.y_train)} train / {len(data.y_test)} test), "
          f"{entry.epochs} epochs", flush=True)
    model, train_seconds, cpu_seconds, log = train(entry, data, log=lambda s: print(s, flush=True))
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    exporter = export(model, entry, onnx_path)
    xt = np.ascontiguousarray(data.x_test.reshape(len(data.x_test), *entry.input_shape), dtype=np.float32)
    onnx_acc = onnx_accuracy(onnx_path, xt, data.y_test)
    torch_acc = torch_accuracy(model, torch.from_numpy(xt), torch.from_numpy(data.y_test))
    swapped = maxpool_as_average(onnx_path)
    maxpool_as_avg_acc = None if swapped is None else onnx_accuracy(swapped.SerializeToString(), xt, data.y_test)
    lams = [float(m.lam) for m in model.modules() if isinstance(m, QCFS)]
    add_metadata(onnx_path, {
        "snnc.model": name,
        "snnc.dataset": entry.dataset,
        "snnc.input_shape": ",".join(map(str, entry.input_shape)),
        "snnc.ann_test_accuracy": f"{onnx_acc:.4f}",
        "snnc.activation": f"QCFS L={_levels(model)}" if lams else "ReLU",
        "snnc.qcfs_lambdas": ",".join(f"{v:.6f}" for v in lams),
        "snnc.description": entry.description,
    })
    facts = check_onnx(onnx_path, model, entry)
    proto = onnx.load(str(onnx_path))
    facts.update(
        onnx_acc=onnx_acc, torch_acc=torch_acc, maxpool_as_avg_acc=maxpool_as_avg_acc, train_seconds=train_seconds, cpu_seconds=cpu_seconds, log=log,
        exporter=exporter, size=onnx_path.stat().st_size, ir_version=proto.ir_version,
    )
    (out_dir / f"{name}.md").write_text(write_card(entry, data, model, facts))
    print(f"   {name}: onnxruntime test accuracy {100 * onnx_acc:.2f} % (torch {100 * torch_acc:.2f} %), "
          f"{facts['size']} bytes, trained {train_seconds:.1f} s, lambdas {[round(v, 4) for v in lams]}", flush=True)
    return facts


def _levels(model: nn.Module) -> int:
    levels = {m.levels for m in model.modules() if isinstance(m, QCFS)}
    return levels.pop() if len(levels) == 1 else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train, export and document snnc zoo models.")
    parser.add_argument("names", nargs="*", help=f"zoo models: {', '.join(ZOO)}")
    parser.add_argument("--all", action="store_true", help="train every zoo model")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="output folder (default models/zoo)")
    parser.add_argument("--lambda-init", type=float, default=None,
                        help=f"initial QCFS threshold (default {zoo_nets.QCFS_LAMBDA_INIT:g}; for experiments)")
    parser.add_argument("--epochs", type=int, default=None, help="override the zoo's epoch count (for experiments)")
    args = parser.parse_args(argv)
    if args.lambda_init is not None:
        zoo_nets.QCFS_LAMBDA_INIT = args.lambda_init
    names = list(ZOO) if args.all else args.names
    unknown = [n for n in names if n not in ZOO]
    if not names or unknown:
        parser.error(f"name one or more of {', '.join(ZOO)} (or --all)" + (f"; unknown: {unknown}" if unknown else ""))
    for name in names:
        run(name, args.out, epochs=args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
