"""snnc: compile trained ANNs (ONNX) into spiking networks."""

__version__ = "0.1.0"
