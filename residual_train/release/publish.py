"""``python -m residual_train.release.publish``: copy an export into a registry, list, move aliases.

CLI::

    python -m residual_train.release.publish src=DIR registry=PATH name=NAME version=V [alias=A[,B]] [wandb=true]
    python -m residual_train.release.publish list registry=PATH [name=NAME]
    python -m residual_train.release.publish alias registry=PATH name=NAME version=V alias=A

The registry itself (layout, immutability, verification) is :mod:`residual_train.release.registry`.
"""

from __future__ import annotations

from pathlib import Path

from data_gen.core.cli import run_app
from data_gen.core.environment import environment
from data_gen.core.errors import require
from data_gen.core.paths import APPS
from data_gen.core.values import boolean
from residual_train.release.card import ModelCard
from residual_train.release.registry import FILES, Registry, TamperedError

__all__ = ["FILES", "Registry", "TamperedError", "log_wandb_artifact", "run"]


def log_wandb_artifact(path: Path, name: str, version: str, project: str = "residual-train") -> str:
    """Log the published files as a wandb model artifact (card as metadata; offline works)."""
    import wandb

    card = ModelCard.read(path / "card.json")
    run = wandb.init(
        project=project, job_type="publish", name=f"publish-{name}-{version}", dir=str(path.parent)
    )
    try:
        art = wandb.Artifact(name, type="model", metadata={**card.raw, "registry_version": version})
        for f in FILES:
            art.add_file(str(path / f))
        run.log_artifact(art, aliases=[version])
        return run.id
    finally:
        run.finish()


def wandb_ready() -> bool:
    """Whether wandb can log without asking: offline (``WANDB_MODE``), or a key in the
    environment or in ``~/.netrc`` (what ``wandb login`` writes)."""
    env = environment()
    if env.wandb_offline or env.wandb_api_key:
        return True
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def run(cfg: dict) -> dict | None:
    if boolean(cfg["wandb"], "wandb"):  # checked before anything is copied
        require(
            wandb_ready(),
            "wandb = true: wandb is not logged in (run wandb login, or set WANDB_MODE=offline "
            "and wandb sync later); nothing was published",
        )
    reg = Registry(cfg["registry"])
    action = cfg["action"]
    if action == "list":
        for r in reg.list(cfg["name"] or None):
            print(
                f"{r['name']:20s} {r['version']:12s} {','.join(r['aliases']):18s} "
                f"{r['monitor']}={r['value']}  {r['published']}"
            )
        return None
    for key in ("name", "version", *(("src",) if action == "publish" else ("alias",))):
        require(cfg.get(key) not in (None, ""), f"{key} is required to {action} ({key}=...)")
    name, version = str(cfg["name"]), str(cfg["version"])
    if action == "alias":
        reg.set_alias(name, str(cfg["alias"]), version)
        return {"alias": str(cfg["alias"]), "version": version}
    require(action == "publish", f"action = {action!r}: use publish, list or alias")
    aliases = [a for a in str(cfg["alias"] or "").split(",") if a]
    dest = reg.publish(cfg["src"], name, version, aliases)
    out = {"published": str(dest)}
    if cfg["wandb"]:
        out["wandb_run"] = log_wandb_artifact(dest, name, version, cfg["project"])
    return out


def main() -> None:
    run_app(APPS, "publish", run, words={"action": "list|alias|publish"})


if __name__ == "__main__":
    main()
