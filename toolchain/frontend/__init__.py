"""ONNX frontend: `import_onnx(path)` gives the raw ANN graph (one node per ONNX node, constants resolved)."""

from toolchain.frontend.onnx_import import NO_SPIKING_EQUIVALENT, SUPPORTED_OPS, Importer, import_onnx, load_onnx

__all__ = ["NO_SPIKING_EQUIVALENT", "SUPPORTED_OPS", "Importer", "import_onnx", "load_onnx"]
