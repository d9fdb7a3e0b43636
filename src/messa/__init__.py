"""Messa: private messaging on Matrix with keys only on your devices.

The public SDK entry point is :class:`messa.client.MessaClient`.
"""

from messa.errors import MessaError

__version__ = "0.1.0.dev0"

__all__ = ["MessaError", "__version__"]
