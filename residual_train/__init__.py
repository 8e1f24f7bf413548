"""residual-train: per-component residual networks for camera image restoration.

The training side (DataModule, models, Lightning), export, registry, deployment and
evaluation build on the shards and physics of :mod:`data_gen`; see ``docs/design.md`` §5
for the data flow.
"""

from data_gen import __version__

__all__ = ["__version__"]
