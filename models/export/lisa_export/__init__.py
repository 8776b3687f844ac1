"""lisa_export: LISA (PyTorch, Hugging Face layout) -> a verified `lisa-onnx/1` ONNX bundle, plus the PyTorch
reference runner and the tiny random-weight fixtures."""

__version__ = "0.1.0"
