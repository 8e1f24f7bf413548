"""Shards, manifest, determinism, resuming, bad input, and the command-line tools."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from data_gen.core.errors import InputError
from data_gen.generate import generate, generation_config, parse_shard_index
from data_gen.preview import contact_sheet
from data_gen.shards import verify
from tests.conftest import ROOT, compose_cfg, shared, tree_digest
from tests.helpers.cli import run_module

PY = sys.executable


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A complete tiny dataset made in one process (the reference bytes)."""
    d = tmp_path_factory.mktemp("ref") / "ds"
    generate(compose_cfg(f"out_dir={d}"))
    return d


def test_dataset_layout_schema_and_saved_config(reference):
    names = sorted(p.name for p in reference.iterdir())
    assert names == [
        "config.yaml",
        "manifest.json",
        "records",
        "shard-00000-of-00003.h5",
        "shard-00001-of-00003.h5",
        "shard-00002-of-00003.h5",
    ]
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.yaml", "manifest.json", "shard-00000-of-00003.h5"):
        # readable by others as the umask allows (config.yaml is made with mkstemp)
        assert stat.S_IMODE((reference / name).stat().st_mode) == 0o666 & ~mask, name
    m = json.loads((reference / "manifest.json").read_text())
    assert m["num_shards"] == 3 and m["total_samples"] == 36 and m["schema_version"] == 1
    saved = yaml.safe_load((reference / "config.yaml").read_text())
    assert saved == generation_config(compose_cfg(f"out_dir={reference}"))
    with h5py.File(reference / m["shards"][1]["name"], "r") as f:
        assert f.attrs["schema_version"] == 1 and f.attrs["layout"] == "rgb"
        assert "0 = black level" in f.attrs["scale"]
        assert yaml.safe_load(f.attrs["config"]) == saved
        assert f.attrs["config_hash"] == m["config_hash"]
        for k in ("clean", "blur", "noise", "noise_blur"):
            assert f[k].shape == (12, 3, 16, 16) and f[k].chunks == (1, 3, 16, 16)
        meta = f["meta"][:]
        assert set(meta.dtype.names) >= {
            "source",
            "y",
            "x",
            "zoom",
            "f_number",
            "focus",
            "image_height",
            "azimuth",
            "psf_index",
            "iso",
            "k0",
            "k1",
            "ob",
            "white",
            "seed",
        }
        assert np.all(meta["f_number"] == 2.8) and np.all(meta["k1"] == np.float32(0.63))
        assert set(meta["iso"]) <= {100, 400, 1600, 6400}
        assert np.all((meta["image_height"] >= 0) & (meta["image_height"] <= 1))
        assert len(set(meta["seed"])) == 12
        assert f["psfs"].shape == (1, 3, 7, 7)


def test_same_config_is_byte_identical_with_two_workers(reference, tmp_path):
    generate(compose_cfg(f"out_dir={tmp_path}", "workers=2", "fft_threads=2"))
    assert tree_digest(tmp_path) == tree_digest(reference)


def test_different_shards_and_seeds_give_different_data(reference, tmp_path):
    with (
        h5py.File(reference / "shard-00000-of-00003.h5") as a,
        h5py.File(reference / "shard-00001-of-00003.h5") as b,
    ):
        assert not np.array_equal(a["noise_blur"][:], b["noise_blur"][:])
    generate(compose_cfg(f"out_dir={tmp_path}", "seed=1", "shard_index=0"))
    with (
        h5py.File(reference / "shard-00000-of-00003.h5") as a,
        h5py.File(tmp_path / "shard-00000-of-00003.h5") as b,
    ):
        assert not np.array_equal(a["clean"][:], b["clean"][:])


def test_shard_subsets_from_the_cli_complete_the_same_dataset(reference, tmp_path):
    from tests.conftest import TINY, TINY_DEAD_LEAVES

    common = [f"out_dir={tmp_path}", *TINY, *TINY_DEAD_LEAVES]
    r = run_module("data_gen", *common, "shard_index=range(0,2)")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["manifest"] is False
    assert not (tmp_path / "manifest.json").exists()
    r = run_module("data_gen", *common, "shard_index=2")
    assert r.returncode == 0, r.stderr
    assert tree_digest(tmp_path) == tree_digest(reference)
    r = run_module("data_gen.verify", str(tmp_path))
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr


def test_complete_shards_are_skipped_and_damaged_ones_redone(reference, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(reference, d)
    again = generate(compose_cfg(f"out_dir={d}"))
    assert again["shards_written"] == 0 and again["shards_skipped"] == 3
    # a half-written file under the final name (e.g. a copy cut short) and a flipped byte
    p0, p2 = d / "shard-00000-of-00003.h5", d / "shard-00002-of-00003.h5"
    p0.write_bytes(p0.read_bytes()[: p0.stat().st_size // 2])
    raw = bytearray(p2.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p2.write_bytes(bytes(raw))
    problems, _ = verify(d)
    assert len(problems) == 2
    redo = generate(compose_cfg(f"out_dir={d}"))
    assert redo["shards_written"] == 2
    assert tree_digest(d) == tree_digest(reference)


@pytest.mark.slow
def test_generation_killed_part_way_resumes_and_verifies(tmp_path):
    from tests.conftest import TINY

    args = [
        f"out_dir={tmp_path}",
        *TINY,
        "shards=6",
        "samples_per_shard=48",
        "source.size=128",
        "patches_per_source=8",
    ]
    ref = tmp_path.parent / "kill_ref"
    assert run_module("data_gen", *args[1:], f"out_dir={ref}").returncode == 0
    proc = subprocess.Popen(
        [PY, "-m", "data_gen", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while not list((tmp_path / "records").glob("*.json")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list((tmp_path / "records").glob("*.json"))
    assert 1 <= len(done) < 6, "the kill should land part-way"
    assert not (tmp_path / "manifest.json").exists()
    r = run_module("data_gen.verify", str(tmp_path))
    assert r.returncode == 1 and f"no manifest yet: {len(done)} of 6 shards complete" in r.stdout
    r = run_module("data_gen", *args)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["shards_skipped"] >= 1 and summary["manifest"]
    assert run_module("data_gen.verify", str(tmp_path)).returncode == 0
    assert not list(tmp_path.glob("*.tmp-*"))
    assert tree_digest(tmp_path) == tree_digest(ref)


def test_out_dir_of_another_config_is_refused_and_left_alone(reference, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(reference, d)
    before = tree_digest(d)
    with pytest.raises(InputError, match=r"another config \(differs in: patch_size\)"):
        generate(compose_cfg(f"out_dir={d}", "patch_size=8"))
    assert tree_digest(d) == before


def _write_images(d: Path, good: int = 2) -> None:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(d / f"ok{i}.png")


def _bad_case(tmp: Path, case: str) -> tuple[list[str], str | tuple[str, ...]]:
    """Overrides and the expected fragment(s) of the message, for one kind of bad input."""
    imgs = tmp / "imgs"
    if case == "missing folder":
        return ["source=folder", f"source.path={tmp / 'absent'}"], "folder does not exist"
    if case in ("corrupt image", "unreadable image", "image smaller than patch"):
        _write_images(imgs)
        if case == "corrupt image":
            good = (imgs / "ok0.png").read_bytes()
            (imgs / "zz_trunc.png").write_bytes(good[: len(good) // 3])
            return ["source=folder", f"source.path={imgs}"], "zz_trunc.png"
        if case == "unreadable image":
            (imgs / "notes.png").write_text("not an image")
            return ["source=folder", f"source.path={imgs}"], "notes.png cannot be read"
        Image.fromarray(np.zeros((12, 40, 3), np.uint8)).save(imgs / "tiny.png")
        return ["source=folder", f"source.path={imgs}"], "tiny.png is 40x12 pixels"
    if case.startswith("psf"):
        k = np.ones((5, 5), np.float32)
        if case == "psf nan":
            k[2, 2] = np.nan
            needle = "non-finite"
        elif case == "psf negative":
            k[0, 0] = -1
            needle = "negative"
        else:
            k = np.ones((4, 4), np.float32)
            needle = "must be odd"
        np.save(tmp / "k.npy", k)
        return ["lens=file", f"lens.path={tmp / 'k.npy'}"], (f"{tmp / 'k.npy'}: PSF", needle)
    if case == "unknown camera":
        doc = {
            "noiseprofiles": [
                {
                    "maker": "Acme",
                    "models": [
                        {
                            "model": "X1",
                            "profiles": [{"iso": 100, "a": [1e-5] * 3, "b": [1e-7] * 3}],
                        }
                    ],
                }
            ]
        }
        (tmp / "np.json").write_text(json.dumps(doc))
        return [
            "sensor=darktable",
            f"sensor.profile={tmp / 'np.json'}",
            "sensor.maker=Acme",
            "sensor.model=Z9",
            "sensor.iso=[100]",
        ], "camera 'Acme' 'Z9' not found"
    table = {
        "k1 < 0": (["sensor.k1=-0.5"], "sensor.k1 = -0.5 must be >= 0"),
        "iso <= 0": (["sensor.iso=[100,0]"], "sensor.iso contains 0"),
        "white <= ob": (
            ["sensor.white=400"],
            "sensor.white = 400 must be greater than sensor.ob = 512",
        ),
        "patch size 0": (["patch_size=0"], "patch_size = 0: must be an integer >= 1"),
        "shard out of range": (["shard_index=7"], "shard_index 7 is outside 0..2"),
        "bad dtype": (["storage.dtype=int8"], "storage.dtype = 'int8'"),
        "exposure 0": (["exposure.min=0"], "need 0 < exposure.min"),
        "exposure share > 1": (["exposure.at_max=1.5"], "exposure.at_max = 1.5: a share in [0, 1]"),
        "f-number < 0": (["lens.f_number=-2"], "lens.f_number = -2"),
    }
    return table[case]


BAD_CASES = [
    "missing folder",
    "corrupt image",
    "unreadable image",
    "image smaller than patch",
    "psf nan",
    "psf negative",
    "psf even",
    "unknown camera",
    "k1 < 0",
    "iso <= 0",
    "white <= ob",
    "patch size 0",
    "shard out of range",
    "bad dtype",
    "exposure 0",
    "exposure share > 1",
    "f-number < 0",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_a_clear_error_and_leaves_out_dir_as_it_was(case, reference, tmp_path):
    overrides, needle = _bad_case(tmp_path, case)
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    shutil.copytree(reference, existing)
    before = tree_digest(existing)
    for out in (fresh, existing):
        with pytest.raises(InputError) as e:
            generate(compose_cfg(f"out_dir={out}", *overrides))
        for part in (needle,) if isinstance(needle, str) else needle:
            assert part in str(e.value), str(e.value)
    assert not fresh.exists()
    assert tree_digest(existing) == before


def test_cli_error_is_one_line_naming_value_and_origin(tmp_path):
    r = run_module("data_gen", f"out_dir={tmp_path / 'o'}", "sensor.k1=-0.5", "progress=false")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1
    assert "sensor.k1 = -0.5" in err[0] and "command line: sensor.k1=-0.5" in err[0]
    r = run_module(
        "data_gen",
        f"out_dir={tmp_path / 'o'}",
        "sensor=phone_10bit",
        "sensor.iso={min:0,max:100}",
        "progress=false",
    )
    assert r.returncode == 2 and "sensor.iso.min = 0" in r.stderr
    assert not (tmp_path / "o").exists()


def test_verify_reports_missing_shards_and_bad_manifest(reference, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(reference, d)
    (d / "shard-00001-of-00003.h5").unlink()
    r = run_module("data_gen.verify", str(d))
    assert r.returncode == 1 and "shard-00001-of-00003.h5: missing" in r.stdout
    (d / "manifest.json").write_text("{ not json")
    r = run_module("data_gen.verify", str(d))
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_preview_contact_sheet(reference, tmp_path):
    sheet = contact_sheet(reference, n=4, scale=2)
    assert sheet.size == (110 + 6 * (32 + 4), 18 + 4 * (32 + 4))
    px = np.asarray(sheet)
    # the residual columns are not flat grey
    r_n = px[18:50, 110 + 5 * 36 : 110 + 5 * 36 + 32]
    assert r_n.std() > 5
    r = run_module("data_gen.preview", str(reference), f"out={tmp_path / 'p.png'}", "n=2")
    assert r.returncode == 0 and Image.open(tmp_path / "p.png").size[1] == 18 + 2 * 36


def test_parse_shard_index_forms():
    assert parse_shard_index(None, 3) == [0, 1, 2]
    assert parse_shard_index("range(1,3)", 4) == [1, 2]
    assert parse_shard_index("0:2", 4) == [0, 1]
    assert parse_shard_index([3, 1], 4) == [1, 3]
    with pytest.raises(InputError, match="outside"):
        parse_shard_index("range(2,9)", 4)


def test_real_photographs_as_originals(tmp_path):
    folder = shared("kodak24")
    generate(
        compose_cfg(
            f"out_dir={tmp_path}",
            "source=folder",
            f"source.path={folder}",
            "source.shrink=2",
            "source.check=header",
            "shards=1",
        )
    )
    with h5py.File(next(tmp_path.glob("*.h5"))) as f:
        names = {s.decode() for s in f["meta"]["source"]}
        assert all(n.startswith("kodim") for n in names)
        assert np.isfinite(f["noise_blur"][:]).all()


def test_manifest_only_writes_the_manifest_or_names_missing_shards(reference, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(reference, d)
    (d / "manifest.json").unlink()
    cfg = compose_cfg(f"out_dir={d}", "manifest_only=true")
    s = generate(cfg)
    assert s["manifest"] and s["shards_written"] == 0
    assert (d / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    (d / "shard-00001-of-00003.h5").unlink()
    (d / "manifest.json").unlink()
    with pytest.raises(
        InputError, match=r"1 of 3 shards .* missing or incomplete \(indices \[1\]\)"
    ):
        generate(cfg)
    assert not (d / "manifest.json").exists()
