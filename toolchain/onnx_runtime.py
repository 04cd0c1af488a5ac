"""Running the original ONNX model with onnxruntime: the independent reference for the ANN side."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from toolchain.progress import progress


def session(model: onnx.ModelProto, threads: int, extra_outputs: list[str] = ()) -> ort.InferenceSession:
    """A CPU session on `model`, also returning the named intermediate tensors."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    # Each extra output keeps the element type shape inference gave it (a float16 model has float16 activations).
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    for name in extra_outputs:
        if name not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_batches(sess: ort.InferenceSession, x: np.ndarray, batch_size: int, label: str):
    """Yield the session's outputs batch by batch (dtype matched to the model input)."""
    feed = sess.get_inputs()[0]
    dtype = np.float16 if feed.type == "tensor(float16)" else np.float64 if feed.type == "tensor(double)" else np.float32
    fixed = feed.shape[0] if isinstance(feed.shape[0], int) and feed.shape[0] > 0 else None
    size = fixed or batch_size  # a model exported with a fixed batch takes exactly that many samples
    for start in progress(range(0, len(x), size), label, total=-(-len(x) // size)):
        chunk = x[start: start + size].astype(dtype)
        count = len(chunk)
        if fixed and count < fixed:  # pad the last batch, then drop the padding's outputs
            chunk = np.concatenate([chunk, np.zeros((fixed - count, *chunk.shape[1:]), dtype)])
        yield [out[:count] for out in sess.run(None, {feed.name: chunk})]


def predict(model: onnx.ModelProto, x: np.ndarray, threads: int, batch_size: int = 256) -> np.ndarray:
    """Class predictions (argmax of the output) of the ANN for every sample."""
    sess = session(model, threads)
    return np.concatenate([out[0].reshape(len(out[0]), -1).argmax(1) for out in run_batches(sess, x, batch_size, "ANN (onnxruntime)")])
