"""Paired-patch generator: originals + PSF + sensor noise -> HDF5 shards (docs/design.md §3, §6).

The physics and data layer: it imports nothing from :mod:`residual_train`, which builds
on it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("residual-train")  # both packages ship in one distribution
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
