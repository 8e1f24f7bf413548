"""The named photograph sets: the validation split is fixed, never trained on by the recipes
that hold it out, and named sets resolve (or fail in one line) where the data is absent."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from data_gen.core.errors import InputError
from data_gen.generate import build_pipeline, config_hash, generation_config
from data_gen.sources import FolderSource, build_source
from data_gen.splits import BSD400_VAL, SETS, every_tenth, photo_set
from residual_train.evaluate.images import image_set, load_images, set_role
from tests.conftest import ROOT, compose_cfg, shared

SHIPPED_HASH = "3289721b8303616f99891cfb7abe97ea0ce2991498dd2a31b087a9edf88c2039"  # the card's


def test_the_validation_split_is_the_documented_rule():
    bsd = shared("bsds400")
    names = [f.name for f in bsd.iterdir() if f.suffix == ".jpg"]
    assert len(names) == 400
    assert every_tenth(names) == BSD400_VAL and len(set(BSD400_VAL)) == 40


def test_shipped_v2_never_trains_on_the_validation_split_and_shipped_is_unchanged():
    shared("bsds400")
    train = build_source(compose_cfg("dataset=shipped_v2", tiny=False)["source"], 3)
    val = build_source(compose_cfg("dataset=shipped_v2_val", tiny=False)["source"], 3)
    old = build_source(compose_cfg("dataset=shipped", tiny=False)["source"], 3)
    t = {f.name for f in train.sources[0].files}
    v = {f.name for f in val.sources[0].files}
    assert v == set(BSD400_VAL) and not t & v and len(t) == 360
    assert {f.name for f in old.sources[0].files} == t | v
    # the shipped model's dataset recipe keeps its config hash (its card names it)
    cfg = compose_cfg("dataset=shipped", tiny=False)
    assert config_hash(generation_config(cfg)) == SHIPPED_HASH
    v2 = compose_cfg("dataset=shipped_v2", tiny=False)
    assert config_hash(generation_config(v2)) != SHIPPED_HASH


def test_a_split_naming_files_of_another_folder_is_a_one_line_error(tmp_path):
    from PIL import Image

    for n in ("a.png", "b.png"):
        Image.new("RGB", (40, 40)).save(tmp_path / n)
    assert [f.name for f in FolderSource(str(tmp_path), exclude=["a.png"]).files] == ["b.png"]
    assert [f.name for f in FolderSource(str(tmp_path), include="a.png").files] == ["a.png"]
    with pytest.raises(InputError, match=r"source.exclude names 40 file\(s\) not in"):
        FolderSource(str(tmp_path), exclude=["bsd400_val"])
    cfg = compose_cfg(
        "out_dir=x", "source=folder", f"source.path={tmp_path}", "+source.include=[c.png]"
    )
    with pytest.raises(InputError, match=r"source.include names 1 file\(s\)"):
        build_pipeline(cfg)


def test_named_sets_load_with_their_role():
    shared("bsds400")
    imgs = load_images(["bsd400_val", "kodak24"], max_images=2, max_size=64)
    assert [n for n, _ in imgs] == [
        "bsd400_val/100007",
        "bsd400_val/103006",
        "kodak24/kodim01",
        "kodak24/kodim02",
    ]
    assert [set_role(image_set(n)) for n, _ in imgs] == ["validation"] * 2 + ["test"] * 2
    assert {s.role for s in SETS.values()} == {"training", "validation", "test"}
    with pytest.raises(InputError, match="not a named set"):
        photo_set("kodak25")


def test_other_cameras_are_the_colour_frames_of_the_depth_photographs():
    shared("depth")
    imgs = load_images("other_cameras", shrink_factor=1, max_size=48)
    names = [n for n, _ in imgs]
    assert len(names) == 7 and {image_set(n) for n in names} == {"other_cameras"}
    assert set_role("other_cameras") == "test"
    # no depth map, disparity map or second stereo view is read as a photograph
    assert not any(("depth" in n) or ("GT" in n) or n.endswith(("aloeR", "im6")) for n in names)
    assert all(a.shape == (3, 48, 48) for _, a in imgs)


def test_an_unknown_set_and_absent_shared_data_are_one_line_errors(tmp_path):
    """From a copy of the package that has no ../shared beside it (a user's install)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", "from residual_train.evaluate import load_images as l; l('x')"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "images = 'x': not a folder, nor builtin or a named set (bsd400_val" in r.stderr
    code = (
        "import data_gen.splits as s; s.SHARED_DATA = 'no/such/shared'\n"
        "from residual_train.evaluate.images import load_images\n"
        "try:\n    load_images('kodak24')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert r.stdout.strip() == (
        "InputError images = kodak24: a named set of the project's shared data "
        "(no/such/shared), which this checkout does not have; give a folder of photographs "
        "instead"
    )
