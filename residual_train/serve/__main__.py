"""``python -m residual_train.serve``: the correction service (settings in
``conf/apps/serve.yaml``), and ``keys add|revoke|list`` to manage its users' API keys."""

from __future__ import annotations

from pathlib import Path

from data_gen.core.cli import run_app
from data_gen.core.errors import require
from data_gen.core.paths import APPS
from data_gen.core.values import one_of
from data_gen.sources import check_linearize


def registry_dir(cfg: dict) -> Path | None:
    """The registry devices may fetch from: ``registry=``, or the package's own for a
    shipped model; None for a plain export directory."""
    from residual_train.deploy import SHIPPED, shipped_models

    if cfg["registry"]:
        return Path(str(cfg["registry"])).expanduser()
    if str(cfg["model"]).partition(":")[0] in shipped_models():
        return SHIPPED
    return None


def check_settings(cfg: dict) -> None:
    """The numbers in ``conf/apps/serve.yaml`` are numbers in range (one line otherwise)."""
    limits = {
        "port": (1, 65535),
        "workers": (1, 256),
        "queue_size": (1, 100000),
        "quota_images": (1, 10**9),
        "tile": (32, 8192),
        "overlap": (4, 4096),
    }
    for key, (lo, hi) in limits.items():
        v = cfg.get(key)
        require(
            isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
            f"{key} = {v!r}: an integer from {lo} to {hi}",
        )
    mb = cfg["max_upload_mb"]
    require(
        isinstance(mb, (int, float)) and not isinstance(mb, bool) and mb > 0,
        f"max_upload_mb = {mb!r}: a positive number of megabytes",
    )
    require(
        cfg["tile"] > cfg["overlap"], f"tile = {cfg['tile']} must exceed overlap = {cfg['overlap']}"
    )
    check_linearize(cfg["linearize"])
    from residual_train.deploy.ensemble import CHOICES

    one_of(cfg["self_ensemble"], "self_ensemble", CHOICES)


def keys(cfg: dict) -> dict | None:
    from residual_train.serve.keys import KeyStore

    store = KeyStore(Path(str(cfg["storage"])).expanduser())
    action, user = cfg["action"], cfg["user"]
    require(action in ("add", "revoke", "list"), f"keys {action}: use keys add|revoke|list")
    if action == "list":
        for row in store.users():
            print(f"{row['user']:24s} {row['active']} active of {row['keys']}")
        return None
    require(bool(user), f"keys {action} needs a user: keys {action} USER")
    if action == "add":
        key = store.add(str(user))
        print(f"new key for {user} (shown once; send it as the X-API-Key header):")
        print(key)
        return None
    n = store.revoke(str(user))
    print(f"revoked {n} key(s) of {user}")
    return None


def run(cfg: dict) -> dict | None:
    if cfg["command"] == "keys":
        return keys(cfg)
    require(cfg["command"] == "run", f"command = {cfg['command']!r}: run or keys")
    check_settings(cfg)
    import uvicorn

    from residual_train.deploy import load_model
    from residual_train.serve.app import check_served, create_app

    model = load_model(
        str(cfg["model"]), cfg["registry"] or None, self_ensemble=cfg["self_ensemble"]
    )
    check_served(model)  # before anything is written to the storage
    reg = registry_dir(cfg)
    app = create_app({**cfg, "registry_dir": str(reg) if reg else None}, model)
    if app.state.recovered:
        print(f"resuming {len(app.state.recovered)} unfinished job(s)", flush=True)
    print(
        f"serving http://{cfg['host']}:{cfg['port']}/ (model {model.path}, views "
        f"{'; '.join(f'{h} ' + '+'.join(v) for h, v in model.views.items())}, storage "
        f"{Path(str(cfg['storage'])).expanduser()})",
        flush=True,
    )
    uvicorn.run(app, host=str(cfg["host"]), port=int(cfg["port"]), log_level=cfg["log_level"])
    return None


def main() -> None:
    run_app(
        APPS, "serve", run, words={"command": "keys|run", "action": "add|revoke|list", "user": "*"}
    )


if __name__ == "__main__":
    main()
