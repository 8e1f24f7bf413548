"""residual-train: per-component residual networks for camera image restoration.

The training side (DataModule, models, Lightning) builds on the shards written by
:mod:`data_gen`; see ``DESIGN.md`` §2 for the data flow.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("residual-train")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
