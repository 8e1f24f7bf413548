"""Paired-patch generator: originals + PSF + sensor noise -> HDF5 shards (DESIGN §1-§3)."""

from residual_train import __version__

__all__ = ["__version__"]
