"""Bad input and faults: every command ends with its result or one line naming what was
wrong (exit 2 bad input, 1 environment), and nothing written earlier is lost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from data_gen.core.errors import InputError
from data_gen.generate import build_pipeline, claim_out_dir, generate
from data_gen.shards import MANIFEST
from residual_train.release.registry import Registry, TamperedError
from residual_train.training.train import train
from tests.conftest import ROOT, compose_cfg, tree_digest
from tests.helpers.cli import ends_in_one_error_line, one_line_error
from tests.helpers.cli import run_module as run
from tests.helpers.fs import tmpfs
from tests.helpers.training import train_cfg


@pytest.fixture(scope="module")
def small(trained_model):
    """A tiny dataset, a trained run and its export (conftest's session model)."""
    return trained_model


# ---- recompose reads only maps that match -------------------------------------------------
@pytest.fixture(scope="module")
def maps(small, tmp_path_factory):
    d = tmp_path_factory.mktemp("maps")
    img = (np.random.default_rng(0).random((40, 56, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(d / "in.tif", img, photometric="rgb")
    r = run(
        "residual_train.deploy",
        f"model={small['exp']}",
        f"input={d / 'in.tif'}",
        f"out_dir={d / 'm'}",
        "iso=800",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return d / "m"


@pytest.mark.parametrize(
    "damage, needle",
    [
        (
            lambda m: tifffile.imwrite(m / "R_blur.tif", np.zeros((1, 1, 3), np.float32)),
            "R_blur.tif",
        ),
        (
            lambda m: tifffile.imwrite(m / "R_noise.tif", np.full((40, 56, 3), np.nan, np.float32)),
            "NaN",
        ),
        (lambda m: (m / "R_blur.tif").unlink(), "R_blur.tif: missing"),
        (lambda m: (m / "R_noise.tif").write_text("not a tiff"), "not a readable TIFF"),
        (
            lambda m: (m / "maps.json").write_text("{oops"),
            "maps.json: maps description is not valid JSON",
        ),
        (
            lambda m: tifffile.imwrite(m / "input.tif", np.zeros((40, 56, 4), np.float32)),
            "do not belong",
        ),
    ],
)
def test_recompose_refuses_maps_that_do_not_match(maps, tmp_path, damage, needle):
    m = tmp_path / "m"
    shutil.copytree(maps, m)
    damage(m)
    r = run(
        "residual_train.deploy.recompose",
        f"maps={m}",
        "strengths.blur=0.5",
        f"out={tmp_path / 'y.tif'}",
    )
    one_line_error(r, 2, needle)
    assert not (tmp_path / "y.tif").exists()


def train_cli(small: dict, run_dir: Path, *extra: str):
    return run(
        "residual_train", f"data.dir={small['ds']}", f"run_dir={run_dir}", "experiment=tiny", *extra
    )


# ---- training never overwrites a run --------------------------------------------------------
def test_training_refuses_an_existing_run_dir_and_overwrite_moves_it_aside(small, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(small["run"], run_dir)
    before = tree_digest(run_dir)
    r = train_cli(small, run_dir, "seed=7")
    one_line_error(r, 2, "already holds a run", "ckpt_path=last", "overwrite=true")
    assert tree_digest(run_dir) == before
    res = train(
        train_cfg(
            f"data.dir={small['ds']}",
            f"run_dir={run_dir}",
            "trainer.max_epochs=1",
            "val.panel_every=0",
            "overwrite=true",
        )
    )
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and tree_digest(aside[0]) == before  # the old run, intact
    assert res["global_step"] > 0 and (run_dir / "result.json").is_file()


# ---- publish verifies what it copies --------------------------------------------------------
def test_publish_refuses_an_export_edited_after_export(small, tmp_path):
    src = tmp_path / "exp"
    shutil.copytree(small["exp"], src)
    card = json.loads((src / "card.json").read_text())
    card["metrics"]["value"] = 99.0  # "better" on paper
    (src / "card.json").write_text(json.dumps(card))
    reg = tmp_path / "reg"
    with pytest.raises(TamperedError, match="card.json: sha256 differs from .*SHA256SUMS"):
        Registry(reg).publish(src, "m", "1")
    assert not (reg / "m" / "1").exists() and not (reg / "m" / "index.json").exists()
    (src / "SHA256SUMS").write_text("garbage\n")
    r = run(
        "residual_train.release.publish", f"src={src}", f"registry={reg}", "name=m", "version=1"
    )
    one_line_error(r, 2, "SHA256SUMS, line 1")


@pytest.mark.parametrize(
    "what, corrupt, command, needle",
    [
        (
            "registry index",
            "reg/m/index.json",
            ["residual_train.release.publish", "list"],
            "index.json: registry index is not valid JSON",
        ),
        (
            "model card",
            "exp/card.json",
            ["residual_train.deploy"],
            "card.json: model card is not valid JSON",
        ),
        (
            "manifest",
            "ds/manifest.json",
            ["data_gen.verify"],
            "manifest.json: manifest is not valid JSON",
        ),
        (
            "dataset config",
            "ds/config.yaml",
            ["data_gen"],
            "config.yaml: dataset config is not valid YAML",
        ),
    ],
)
def test_corrupt_json_is_named_not_a_traceback(small, tmp_path, what, corrupt, command, needle):
    ds, exp = tmp_path / "ds", tmp_path / "exp"
    shutil.copytree(small["ds"], ds)
    shutil.copytree(small["exp"], exp)
    Registry(tmp_path / "reg").publish(exp, "m", "1")
    (tmp_path / corrupt).write_text('{"truncated": ')
    args = {
        "residual_train.release.publish": [f"registry={tmp_path / 'reg'}"],
        "residual_train.deploy": [
            f"model={exp}",
            f"input={tmp_path / 'x.png'}",
            f"out_dir={tmp_path / 'o'}",
        ],
        "data_gen.verify": [str(ds)],
        "data_gen": [f"out_dir={ds}", "patch_size=24", "source.size=96"],  # resumes ds
    }[command[0]]
    r = run(*command, *args)
    one_line_error(r, 2, needle)


# ---- file-system failures are one line, exit 1 -----------------------------------------------
def test_out_dir_that_is_a_file(small, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = run(
        "data_gen",
        f"out_dir={f}",
        "shards=1",
        "samples_per_shard=4",
        "patch_size=16",
        "source.size=64",
        "progress=false",
    )
    one_line_error(r, 2, str(f), "is a file, not a directory")
    r = run(
        "residual_train.release.export",
        f"ckpt={small['run'] / 'checkpoints' / 'last.ckpt'}",
        f"out_dir={f}",
    )
    one_line_error(r, 2, str(f), "is a file, not a directory")
    assert f.read_text() == "x"


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="a full disk and a read-only file system need a tmpfs mount: root only",
)
def test_full_disk_and_read_only_file_system(tmp_path):
    gen = ["shards=2", "samples_per_shard=64", "patch_size=48", "source.size=96", "progress=false"]
    with tmpfs(tmp_path / "small", "96k") as d:
        r = run("data_gen", f"out_dir={d / 'ds'}", *gen)
        line = one_line_error(r, 1, "No space left on device", "disk is full")
        assert str(d) in line
        # nothing half-written under a final name, no temporary file left behind
        assert not list((d / "ds").glob("shard-*.h5"))
        assert not [p for p in (d / "ds").rglob("*") if ".tmp-" in p.name]
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as d:
        r = run("data_gen", f"out_dir={d / 'ds'}", *gen)
        one_line_error(r, 1, "Read-only file system", str(d / "ds"))


# ---- the out_dir claim is atomic ------------------------------------------------------------
def claim_race(out: Path, pipes: list) -> tuple[list[str], list[str]]:
    """Every pipeline claims ``out`` at the same moment (threads behind a barrier)."""
    barrier = threading.Barrier(len(pipes))
    won, lost = [], []

    def claim(p) -> None:
        barrier.wait()
        try:
            claim_out_dir(out, p)
            won.append(p.hash)
        except InputError as e:
            assert "another config" in str(e)
            lost.append(p.hash)

    threads = [threading.Thread(target=claim, args=(p,)) for p in pipes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, lost


def test_concurrent_claims_with_different_configs_let_exactly_one_through(tmp_path):
    import yaml

    from data_gen.generate import config_hash

    pipes = [build_pipeline(compose_cfg(f"out_dir={tmp_path}", f"seed={s}")) for s in range(6)]
    for trial in range(5):
        out = tmp_path / f"t{trial}"
        won, lost = claim_race(out, pipes)
        assert len(won) == 1 and len(lost) == len(pipes) - 1, (trial, won, lost)
        assert config_hash(yaml.safe_load((out / "config.yaml").read_text())) == won[0]
        assert [p.name for p in out.iterdir()] == ["config.yaml"]  # no temporary file left
    # the same config claimed concurrently: all proceed (a Slurm array's tasks)
    same = [build_pipeline(compose_cfg(f"out_dir={tmp_path}", "seed=3")) for _ in range(4)]
    won, lost = claim_race(tmp_path / "same", same)
    assert len(won) == 4 and not lost


def test_two_generators_with_different_seeds_never_both_write(tmp_path):
    out = tmp_path / "ds"
    common = [
        "shards=4",
        "samples_per_shard=8",
        "patch_size=16",
        "source.size=64",
        "progress=false",
    ]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "data_gen",
                f"out_dir={out}",
                f"seed={s}",
                f"shard_index={rng}",
                *common,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s, rng in ((1, "range(0,2)"), (2, "range(2,4)"))
    ]
    codes = sorted(p.wait(timeout=300) for p in procs)
    assert codes == [0, 2]
    import yaml

    from data_gen.generate import config_hash

    want = config_hash(yaml.safe_load((out / "config.yaml").read_text()))
    import h5py

    for shard in out.glob("shard-*.h5"):
        with h5py.File(shard) as f:
            assert f.attrs["config_hash"] == want


# ---- faults in the generator ----------------------------------------------------------------
def test_killing_the_generator_takes_its_workers_with_it(tmp_path):
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "data_gen",
            f"out_dir={tmp_path / 'ds'}",
            "workers=2",
            "shards=8",
            "samples_per_shard=256",
            "patch_size=64",
            "source.size=128",
            "progress=false",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def children() -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(p.pid)], capture_output=True, text=True
        )
        return [int(x) for x in out.stdout.split()]

    deadline = time.time() + 120
    while len(children()) < 2 and time.time() < deadline:  # pool workers (+ resource tracker)
        time.sleep(0.2)
    kids = children()
    assert len(kids) >= 2, "the pool never started"
    time.sleep(1.0)  # workers are rendering
    os.kill(p.pid, signal.SIGKILL)
    p.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        st = Path(f"/proc/{pid}/stat")
        return st.exists() and st.read_text().split()[2] != "Z"

    deadline = time.time() + 20
    while any(alive(k) for k in kids) and time.time() < deadline:
        time.sleep(0.2)
    assert not [k for k in kids if alive(k)]


def test_stale_temporary_files_are_reported_then_cleaned(small, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(small["ds"], ds)
    old = time.time() - 7200
    stale = [ds / "shard-00000-of-00003.h5.tmp-host-123", ds / "records" / "x.json.tmp-host-9"]
    for f in stale:
        f.write_text("partial")
        os.utime(f, (old, old))
    r = run("data_gen.verify", str(ds))
    assert r.returncode == 0, r.stdout + r.stderr
    for f in stale:
        assert f"{f.relative_to(ds)} is a temporary file" in r.stdout
    cfg = compose_cfg(f"out_dir={ds}", "patch_size=24", "source.size=96")
    res = generate(cfg)
    assert res["shards_written"] == 0 and not any(f.exists() for f in stale)


def test_verify_without_a_manifest_says_how_far_the_dataset_got(small, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(small["ds"], ds)
    (ds / MANIFEST).unlink()
    (ds / "shard-00001-of-00003.h5").unlink()
    r = run("data_gen.verify", str(ds))
    assert r.returncode == 1 and "no manifest yet: 2 of 3 shards complete" in r.stdout


@pytest.mark.parametrize(
    "args",
    [["--no-checksums", "DIR"], ["DIR", "--no-checksums"], ["checksums=false", "DIR"]],
)
def test_verify_takes_its_folder_before_or_after_the_options(small, args):
    r = run("data_gen.verify", *[str(small["ds"]) if a == "DIR" else a for a in args])
    assert r.returncode == 0 and r.stdout.startswith(f"OK {small['ds']}"), r.stdout + r.stderr


# ---- originals and small commands --------------------------------------------------------------
def test_an_original_below_black_is_refused(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    tifffile.imwrite(d / "neg.tif", np.full((96, 96, 3), -5.0, np.float32))
    with pytest.raises(InputError, match=r"neg.tif: values down to -5"):
        generate(compose_cfg(f"out_dir={tmp_path / 'o'}", "source=folder", f"source.path={d}"))
    assert not (tmp_path / "o").exists()
    tifffile.imwrite(
        d / "neg.tif",
        np.full((96, 96, 3), 0.3, np.float32) * (np.arange(96) % 3 > 0)[None, :, None]
        - 0.005 * (np.arange(96) % 2)[:, None, None],
    )
    from data_gen.sources import FolderSource

    assert FolderSource(str(d), False, 1.0).load(d / "neg.tif").pixels.min() == 0.0  # clipped


def test_preview_of_no_samples_is_refused(small, tmp_path):
    r = run("data_gen.preview", str(small["ds"]), f"out={tmp_path / 'p.png'}", "n=0")
    one_line_error(r, 2, "n = 0")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nope=1"], "Could not override 'nope'"),
        (["lens=nope"], "Could not find 'lens/nope'"),
        (["shards=[1"], "no viable alternative"),
    ],
)
def test_hydra_errors_are_one_line(args, needle, tmp_path):
    one_line_error(run("data_gen", f"out_dir={tmp_path / 'o'}", *args), 2, needle)


def test_a_corrupt_checkpoint_is_named_when_resuming_or_exporting(small, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(small["run"], run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:5000])  # truncated (a full disk, a killed copy)
    before = tree_digest(run_dir)
    r = train_cli(small, run_dir, "ckpt_path=last")
    one_line_error(r, 2, "last.ckpt is not a loadable checkpoint")
    assert tree_digest(run_dir) == before
    r = run("residual_train.release.export", f"ckpt={ckpt}", f"out_dir={tmp_path / 'e'}")
    one_line_error(r, 2, "not a loadable checkpoint")
    (run_dir / "result.json").write_text("{")
    ckpt.write_bytes((small["run"] / "checkpoints" / "last.ckpt").read_bytes())
    r = run("residual_train.release.export", f"ckpt={ckpt}", f"out_dir={tmp_path / 'e'}")
    one_line_error(r, 2, "result.json: training result is not valid JSON")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["residual_train.release.publish", "list", "registry=/nonexistent/reg"],
            "not a directory",
        ),
        (["residual_train.serve", "port=abc"], "port = 'abc': an integer"),
        (["residual_train.serve", "tile=64", "overlap=64"], "must exceed overlap"),
        (
            ["residual_train.release.fetch", "url=ftp://host/reg", "out_dir=f"],
            "an http:// or https://",
        ),
        (
            ["residual_train.release.fetch", "url=http://127.0.0.1:9/reg", "out_dir=f"],
            "cannot connect",
        ),
        (["residual_train.deploy", "model=nope", "input=x.png", "out_dir=d"], "model = 'nope'"),
        (
            ["residual_train.release.export", "ckpt=/nonexistent.ckpt", "out_dir=e"],
            "file does not exist",
        ),
        (["residual_train.pipelines.demo", "profile=huge", "out=dm"], "profile = 'huge'"),
        (["data_gen.verify", "/nonexistent/ds"], "not a directory"),
        (["residual_train", "data.dir=/nonexistent/ds", "experiment=tiny"], "no manifest"),
    ],
)
def test_bad_input_to_every_command_is_one_line(tmp_path, args, needle):
    r = run(*args, cwd=tmp_path)
    one_line_error(r, 2, needle)
    assert not [p for p in tmp_path.iterdir()]  # nothing was written


def test_evaluate_checks_every_iso_before_starting(tmp_path):
    r = run(
        "residual_train.evaluate",
        "model=default",
        "images=builtin",
        f"out={tmp_path / 'ev'}",
        "isos=[400,1e9]",
        "progress=true",
    )
    one_line_error(r, 2, "iso = 1e+09 is outside the model's training range")
    assert not (tmp_path / "ev").exists()


# ---- round two: every value typed, every key known, every refusal before a write ---------------
def card_with_width(small: dict, tmp_path: Path) -> Path:
    exp = tmp_path / "exp16"
    shutil.copytree(small["exp"], exp)
    card = json.loads((exp / "card.json").read_text())
    card["model"]["width"] = 16  # the weights are width 8
    (exp / "card.json").write_text(json.dumps(card))
    return exp


@pytest.mark.parametrize(
    "args, needle",
    [
        (["data_gen", "out_dir=o", "progress=maybe"], "progress = 'maybe': true or false"),
        (["data_gen", "out_dir=o", "+lens.foo=1"], "lens.foo: not a setting"),
        (["data_gen", "out_dir=o", "+source.depth=abc"], "source.depth = 'abc': [near, far]"),
        (["data_gen", "out_dir=o", "+source.depth=[20,1]"], "need 0 < near <= far"),
        (["TRAIN", "data.onthefly.enabled=maybe"], "data.onthefly.enabled = 'maybe': true or"),
        (["TRAIN", "+data.onthefly.generator={nonsense: 1}"], "only read with data.onthefly"),
        (
            ["TRAIN", "+data.onthefly.generator={nonsense: 1}", "data.onthefly.enabled=true"],
            "data.onthefly.generator.nonsense: not a generator setting",
        ),
        (["TRAIN", "model.heads=3"], "model.heads = 3: auto, or a list of components"),
        (["TRAIN", "optim.lr=abc"], "optim.lr = 'abc': a number"),
        (["TRAIN", "seed=abc"], "seed = 'abc': an integer"),
        (["TRAIN", "data.batch_size=abc"], "data.batch_size = 'abc'"),
        (["TRAIN", "loss.type=l3"], "loss.type = 'l3': one of l1, l2, charbonnier"),
        (["TRAIN", "+trainer.foo=1"], "trainer: Trainer.__init__() got an unexpected keyword"),
        (["TRAIN", "data.crop=4000", "data.onthefly.enabled=true"], "data.crop = 4000"),
        (["EXPORT", "tol=abc"], "tol = 'abc': a number"),
        (["EXPORT", "tol=-1"], "tol = -1: a number >= 0"),
        (["DEPLOY", "distortion_order=abc"], "distortion_order = 'abc'"),
        (["DEPLOY", "iso=abc"], "iso = 'abc': a number > 0"),
        (["DEPLOY", "linearize=maybe"], "linearize = 'maybe': auto"),
        (["DEPLOY", "batch=0"], "batch = 0: an integer >= 1"),
        (["DEPLOY", "backend=torch", "model=EXP16"], "card.json does not describe"),
        (["residual_train.evaluate", "out=ev", "isos=abc"], "isos = 'abc': a list of numbers"),
        (["residual_train.evaluate", "out=ev", "max_images=abc"], "max_images = 'abc'"),
        (
            ["residual_train.release.fetch", "url=http://127.0.0.1:9/r", "out_dir=f", "timeout=-1"],
            "> 0",
        ),
        (["data_gen.preview", "DS", "out=p.png", "n=abc"], "n = 'abc': an integer"),
        (["data_gen.optics", "atlas", "out=a.png", "points=abc"], "points = 'abc'"),
        (
            [
                "residual_train.release.publish",
                "src=EXP",
                "registry=reg",
                "name=m",
                "version=1",
                "wandb=1",
            ],
            "wandb = 1: true or false",
        ),
    ],
)
def test_bad_values_and_unknown_keys_are_one_line_before_anything_is_written(
    small, tmp_path, args, needle
):
    """A typo is refused naming the key and the value, never an internal error, never
    taken silently; the command writes nothing."""
    exp16 = card_with_width(small, tmp_path.parent / f"{tmp_path.name}-exp")
    commands = {
        "TRAIN": ["residual_train", f"data.dir={small['ds']}", "run_dir=run", "experiment=tiny"],
        "EXPORT": [
            "residual_train.release.export",
            f"ckpt={small['run'] / 'checkpoints/last.ckpt'}",
        ],
        "DEPLOY": ["residual_train.deploy", f"model={small['exp']}", f"input={small['png']}"],
    }
    head = commands.get(args[0], [args[0]])
    if args[0] == "EXPORT":
        head = [*head, "out_dir=e"]
    if args[0] == "DEPLOY":
        head = [*head, "out_dir=d"]
    extra = {"DS": str(small["ds"]), "EXP": f"src={small['exp']}"}
    rest = [extra.get(a, a).replace("EXP16", str(exp16)) for a in args[1:]]
    if args[0] == "TRAIN" and "data.onthefly.enabled=true" in rest:
        rest.append("data.val_shards=all")
    r = run(*head, *rest, cwd=tmp_path, env={"HOME": str(tmp_path.parent / "nohome")})
    one_line_error(r, 2, needle)
    assert "internal error" not in r.stderr
    assert not [p for p in tmp_path.iterdir()]  # nothing was written


def test_a_wrong_depth_range_leaves_no_claim_and_the_corrected_command_works(tmp_path):
    gen = ["shards=1", "samples_per_shard=2", "patch_size=16", "source.size=64"]
    gen += ["progress=false", "components=[fog,blur,noise]"]
    out = tmp_path / "ds"
    for bad in ("+source.depth=[20,1]", "+source.depth=abc"):
        one_line_error(run("data_gen", f"out_dir={out}", bad, *gen), 2, "source.depth")
        assert not out.exists()
    r = run("data_gen", f"out_dir={out}", "+source.depth=[1,20]", *gen)
    assert r.returncode == 0, r.stderr[-2000:]


def test_an_8_bit_png_depth_map_is_refused_not_read_as_metres(tmp_path):
    from PIL import Image

    photos, depth = tmp_path / "photos", tmp_path / "depth"
    photos.mkdir()
    depth.mkdir()
    Image.fromarray(np.full((80, 80, 3), 120, np.uint8)).save(photos / "a.png")
    Image.fromarray(np.full((80, 80), 7, np.uint8)).save(depth / "a.png")  # 8-bit: 256 levels
    cfg = [
        f"out_dir={tmp_path / 'o'}",
        "source=folder",
        f"source.path={photos}",
        f"+source.depth.path={depth}",
        "components=[fog,blur,noise]",
    ]
    with pytest.raises(InputError, match=r"a\.png: a 80x80 uint8 PNG; depth maps are one-channel"):
        generate(compose_cfg(*cfg))
    assert not (tmp_path / "o").exists()
    Image.fromarray(np.full((80, 80), 7000, np.uint16)).save(depth / "a.png")  # 16-bit: fine
    generate(compose_cfg(*cfg, "+source.depth.scale=0.001", "shards=1", "samples_per_shard=2"))


@pytest.mark.parametrize(
    "pixels, needle",
    [
        (np.full((32, 40, 3), -0.5, np.float32), "values down to -0.5 (100% of them below"),
        (np.full((32, 40, 3), 4000.0, np.float32), "values up to 4000; a capture is linear"),
    ],
)
def test_deploy_refuses_an_input_outside_the_sensors_range(small, tmp_path, pixels, needle):
    tifffile.imwrite(tmp_path / "in.tif", pixels, photometric="rgb")
    r = run(
        "residual_train.deploy",
        f"model={small['exp']}",
        f"input={tmp_path / 'in.tif'}",
        f"out_dir={tmp_path / 'o'}",
    )
    one_line_error(r, 2, needle)
    assert not (tmp_path / "o").exists()


def test_a_checkpoint_without_weights_is_named_by_export_and_resume(small, tmp_path):
    import torch

    run_dir = tmp_path / "run"
    shutil.copytree(small["run"], run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ck = torch.load(ckpt, weights_only=True)
    del ck["state_dict"]
    torch.save(ck, ckpt)
    before = tree_digest(run_dir)
    r = run("residual_train.release.export", f"ckpt={ckpt}", f"out_dir={tmp_path / 'e'}")
    one_line_error(r, 2, "last.ckpt: not a residual-train checkpoint (it holds no state_dict")
    r = train_cli(small, run_dir, "ckpt_path=last")
    one_line_error(r, 2, "last.ckpt is not a residual-train training checkpoint (it lacks state")
    assert tree_digest(run_dir) == before and not (tmp_path / "e").exists()


# ---- a resume resumes the run it names ----------------------------------------------------------
@pytest.mark.parametrize(
    "change, needle",
    [
        ("seed=7", "seed = 7: the run being resumed"),
        ("loss.type=l1", "was trained with loss.type = 'charbonnier'"),
        ("model.width=16", "was trained with model.width = 8, not 16: its weights do not fit"),
        ("model.arch=nafnet", "model.arch = 'unet', not 'nafnet'"),
        (f"data.dir={ROOT}", "data.dir"),
    ],
)
def test_a_resume_with_other_settings_is_refused(small, tmp_path, change, needle):
    run_dir = tmp_path / "run"
    shutil.copytree(small["run"], run_dir)
    before = tree_digest(run_dir)
    r = train_cli(small, run_dir, "ckpt_path=last", "trainer.max_epochs=2", change)
    if change.startswith("data.dir"):  # the other dataset must exist to get this far
        r = run(
            "residual_train",
            f"data.dir={small['ds']}",
            f"run_dir={run_dir}",
            "experiment=tiny",
            "ckpt_path=last",
            "data.crop=8",
        )
        needle = "data.crop = 8: the run being resumed"
    one_line_error(r, 2, needle)
    assert tree_digest(run_dir) == before


def test_a_resume_takes_the_changes_it_is_allowed_and_records_them(small, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(small["run"], run_dir)
    r = train_cli(
        small,
        run_dir,
        "ckpt_path=last",
        "trainer.max_epochs=2",  # how long is never a change of the run
        "data.num_workers=1",  # nor how the data is read
        "optim.lr=1e-3",
        "resume.allow_changes=[optim.lr]",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (entry,) = [json.loads(x) for x in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert entry["changes"] == {"optim.lr": [0.0002, 0.001]}
    assert entry["allow_changes"] == ["optim.lr"] and entry["global_step"] > 0
    import yaml

    assert yaml.safe_load((run_dir / "config.resumed.yaml").read_text())["optim"]["lr"] == 1e-3


# ---- a failed command leaves nothing under a final name, nor a claim ------------------------------
def test_a_training_run_refused_after_its_claim_leaves_nothing_behind(small, tmp_path):
    run_dir = tmp_path / "run"
    r = train_cli(small, run_dir, "+trainer.foo=1")  # refused when the Trainer is built
    one_line_error(r, 2, "unexpected keyword argument 'foo'")
    assert not run_dir.exists()
    r = train_cli(small, run_dir, "trainer.max_epochs=1", "val.panel_every=0")
    assert r.returncode == 0, r.stderr[-3000:]


def remount(d: Path, size: str) -> None:
    r = subprocess.run(["mount", "-o", f"remount,size={size}", str(d)], capture_output=True)
    assert r.returncode == 0, r.stderr


def full_disk_command(command: str, small: dict, maps: Path, imgs: Path, out: Path) -> list:
    ckpt = small["run"] / "checkpoints" / "last.ckpt"
    return {
        "train": [
            *("residual_train", f"data.dir={small['ds']}", f"run_dir={out}", "experiment=tiny"),
            *("trainer.max_epochs=1", "val.panel_every=0"),
        ],
        "export": ["residual_train.release.export", f"ckpt={ckpt}", f"out_dir={out}"],
        "deploy": [
            *("residual_train.deploy", f"model={small['exp']}"),
            *(f"input={imgs / 'a.tif'}", f"out_dir={out}"),
        ],
        "recompose": ["residual_train.deploy.recompose", f"maps={maps}", f"out={out}.tif"],
        "evaluate": [
            *("residual_train.evaluate", f"model={small['exp']}", f"images={imgs}", f"out={out}"),
            *("isos=[800]", "baselines=[]", "shrink=1", "workers=1", "progress=false"),
            "min_bin_pixels=10",
        ],
        "data_gen": [
            *("data_gen", f"out_dir={out}", "shards=2", "samples_per_shard=64"),
            *("patch_size=48", "source.size=96", "progress=false"),
        ],
    }[command]


@pytest.mark.skipif(os.geteuid() != 0, reason="a full disk needs a tmpfs mount: root only")
@pytest.mark.parametrize(
    "command, size",
    [
        ("train", "200k"),
        ("export", "150k"),
        ("deploy", "200k"),
        ("recompose", "FULL"),
        ("evaluate", "100k"),
        ("data_gen", "96k"),
    ],
)
def test_a_full_disk_leaves_no_partial_output_and_the_same_command_then_works(
    small, maps, tmp_path, command, size
):
    """Each command on a disk that fills up: one line naming the file, exit 1, nothing
    under a final name, no temporary file, no claim; with space again the very same
    command succeeds."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    big = (np.random.default_rng(1).random((120, 160, 3)) * 30000).astype(np.uint16)
    tifffile.imwrite(imgs / "a.tif", big, photometric="rgb")
    with tmpfs(tmp_path / "small", "4m" if size == "FULL" else size) as d:
        out = d / "out"
        args = full_disk_command(command, small, maps, imgs, out)
        filler = d / "filler"
        if size == "FULL":
            with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
        r = run(*args)
        ends_in_one_error_line(r, 1, "No space left on device", "disk is full", str(out))
        left = [p.name for p in d.iterdir() if p != filler]
        assert left == [], left  # no partial output, no temporary file, no claim
        filler.unlink(missing_ok=True)
        remount(d, "16m")
        r = run(*args)
        assert r.returncode == 0, r.stderr[-3000:]


# ---- a bug leaves its traceback somewhere -----------------------------------------------
def test_a_bug_is_one_line_and_its_traceback_is_kept_where_the_run_is(
    tmp_path, capsys, monkeypatch
):
    """A bug (not the user's input) ends in one line on stderr naming a file that holds the
    full traceback: the run's existing ``logs/`` (a folder that does not exist is never
    created: a failed command leaves no claim), else the cache's ``logs/``."""
    import re

    from data_gen.core.cli import run_task

    monkeypatch.setenv("RESIDUAL_TRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RESIDUAL_TRAIN_DEBUG", raising=False)

    def divide_by_nothing():
        return 1 / 0

    logs, absent = tmp_path / "run" / "logs", tmp_path / "never"
    logs.mkdir(parents=True)
    for dirs, expected in (([absent, logs], logs), ([absent], tmp_path / "cache" / "logs")):
        with pytest.raises(SystemExit) as e:
            run_task(divide_by_nothing, "train", dirs)
        assert e.value.code == 1
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("error: internal error ZeroDivisionError")
        saved = Path(re.search(r"traceback in (\S+);", err[0]).group(1))
        assert saved.parent == expected
        text = saved.read_text()
        assert "Traceback (most recent call last)" in text and "divide_by_nothing" in text
        assert not absent.exists()
