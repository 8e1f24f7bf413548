"""Loading a network's weights from safetensors (never pickle): the exact load of an
export, and the start of a fine-tune from another model's weights (``init_from``)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from data_gen.core.errors import InputError, require

HEAD_KEY = re.compile(r"^out\.([a-z_]+)\.")  # out.<head>.weight / .bias


def load_weights(net: torch.nn.Module, state: dict, what: str) -> None:
    """``net.load_state_dict(state)``; a mismatch is an :class:`InputError` starting with
    ``what`` and naming the first differing tensors."""
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    diffs = [f"{k} missing" for k in want if k not in got]
    diffs += [f"{k} unexpected" for k in got if k not in want]
    diffs += [f"{k} {got[k]} vs {want[k]}" for k in want if k in got and got[k] != want[k]]
    require(not diffs, f"{what} ({len(diffs)} tensors differ: {', '.join(diffs[:3])})")
    net.load_state_dict(state)


def weights_file(path: str | Path) -> Path:
    """``path`` itself (a ``.safetensors`` file) or the ``weights.safetensors`` of an export
    directory (``residual_train/weights/NAME/VERSION`` or ``python -m residual_train.release.export``'s
    output)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "weights.safetensors"
    require(p.is_file(), f"init_from = {str(path)!r}: no such weights file ({p})")
    return p


def init_from(net: torch.nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Start ``net`` from another model's weights: every tensor of ``net`` is taken from the
    file, except the output heads that model did not have, which keep their "no correction"
    initialisation. Its heads that ``net`` lacks are left out. Any other missing or
    differently shaped tensor (another trunk) is an :class:`InputError` naming it.
    Returns ``{"kept": heads taken, "new": heads starting from zero, "dropped": ...}``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = weights_file(path)
    try:
        state = load_file(str(p))
    except (SafetensorError, OSError) as e:
        raise InputError(
            f"init_from = {str(path)!r}: not a readable safetensors file ({e})"
        ) from None
    own = net.state_dict()

    def head(k: str) -> str | None:
        m = HEAD_KEY.match(k)
        return m.group(1) if m else None

    theirs = {head(k) for k in state} - {None}
    mine = {head(k) for k in own} - {None}
    # the file's trunk and the heads both have, plus this net's own (zero) new heads
    merged = {k: v for k, v in state.items() if head(k) is None or head(k) in mine}
    merged.update({k: v for k, v in own.items() if head(k) in mine - theirs})
    load_weights(net, merged, f"init_from = {str(path)!r}: another network than model.*")
    return {
        "kept": sorted(theirs & mine),
        "new": sorted(mine - theirs),
        "dropped": sorted(theirs - mine),
    }
