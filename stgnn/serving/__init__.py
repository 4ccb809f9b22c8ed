"""Serving and export: ``stgnn serve`` (an HTTP JSON API) and ``stgnn export`` (ONNX / TorchScript).

Nothing here is imported by the rest of the package; FastAPI, uvicorn, onnx and onnxruntime are
optional dependencies (``pip install 'stgnn[serve,export]'``).
"""
