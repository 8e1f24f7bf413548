"""The environment variables the project reads, as one typed record read in one place.

Read afresh on every call (a test's ``monkeypatch.setenv`` or a launcher's change is seen);
nothing else in the code base reads ``os.environ`` for these names.

=========================== =============================================================
``RESIDUAL_TRAIN_DEBUG``    ``1``: errors re-raise with their traceback (unset or ``0``: one line)
``RESIDUAL_TRAIN_CACHE``    the cache root (PSF banks, evaluation results, logs of crashes);
                            default ``~/.cache/residual-train``
``RESIDUAL_TRAIN_KEY``      the HMAC key ``fetch`` verifies a registry's signature with
``LOCAL_RANK``              the process's rank on its node (Lightning's DDP launcher sets it)
``WANDB_MODE``              ``offline`` / ``disabled`` / ``dryrun``: wandb never asks to log in
``WANDB_API_KEY``           a wandb key: wandb can log without asking
=========================== =============================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

OFFLINE_WANDB_MODES = ("offline", "disabled", "dryrun")


@dataclass(frozen=True)
class Environment:
    debug: bool
    cache_root: Path
    registry_key: str | None
    first_local_rank: bool  # LOCAL_RANK unset or 0: the node's first (or only) process
    wandb_mode: str
    wandb_api_key: str | None

    @property
    def wandb_offline(self) -> bool:
        return self.wandb_mode in OFFLINE_WANDB_MODES


def environment() -> Environment:
    """The process's environment now, typed (see the module's table)."""
    home = os.getenv("HOME") or "."
    return Environment(
        debug=(os.getenv("RESIDUAL_TRAIN_DEBUG") or "0") != "0",
        cache_root=Path(os.getenv("RESIDUAL_TRAIN_CACHE") or f"{home}/.cache/residual-train"),
        registry_key=os.getenv("RESIDUAL_TRAIN_KEY") or None,
        first_local_rank=(os.getenv("LOCAL_RANK") or "0") == "0",
        wandb_mode=os.getenv("WANDB_MODE") or "",
        wandb_api_key=os.getenv("WANDB_API_KEY") or None,
    )
