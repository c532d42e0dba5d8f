"""Exporting trained stages for deployment: ONNX, verified with onnxruntime."""
