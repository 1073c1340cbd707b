"""Lightbox: a peer-to-peer node for AI-assisted photo editing.

Public surface: the error hierarchy (`LightboxError` and subclasses), `Identity` and
`PeerId`, the config loader, and `run_node`. Everything else is internal to its module.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lightbox-node")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+checkout"

__all__ = ["__version__"]
