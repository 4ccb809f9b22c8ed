"""stgnn: spatio-temporal graph neural networks for traffic forecasting."""

__version__ = "0.1.0"
