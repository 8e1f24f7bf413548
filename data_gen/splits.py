"""The named photograph sets, in one place: which photographs are for training, which for
choosing (validation) and which only for reporting (test). docs/design.md §8.

* ``bsd400_val`` (validation): 40 of the 400 BSD400 photographs, never trained on by a
  recipe that excludes them (``conf/dataset/shipped_v2.yaml``): the file names of
  ``bsds400/`` in sorted order, every 10th from the first (:func:`every_tenth`). The list
  is written out below so that the split does not depend on the folder's contents.
* ``bsd400_train`` (training): the other 360.
* ``kodak24``, ``mcmaster18``, ``cbsd68`` (test): evaluated once per shipped model and
  reported; never used to choose anything.
* ``other_cameras`` (test): the colour photographs of ``depth/`` (:data:`OTHER_CAMERAS`):
  three KITTI street frames, Middlebury's "Aloe" and "Cones" and one frame each of SUN and
  TUM RGB-D (NYU's is a PPM, which the folder sources do not read): other cameras, other
  resolutions (450 x 375 to 1282 x 1110), larger smooth areas; best at ``shrink=1``.

Sets live in the project's shared data (``../shared/data`` from the project root, see
:func:`shared_data`); a fresh clone does not have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_gen.core.errors import require
from data_gen.core.paths import preset_path

SHARED_DATA = "../shared/data"
ROLES = ("training", "validation", "test")

# sorted(os.listdir("bsds400"))[0::10]
BSD400_VAL = (
    "100007.jpg", "103006.jpg", "106005.jpg", "108069.jpg", "117025.jpg",
    "12074.jpg", "134049.jpg", "140088.jpg", "146074.jpg", "153077.jpg",
    "159029.jpg", "163004.jpg", "17067.jpg", "181018.jpg", "187039.jpg",
    "189006.jpg", "198004.jpg", "206062.jpg", "216053.jpg", "225017.jpg",
    "230098.jpg", "238011.jpg", "246016.jpg", "25098.jpg", "26031.jpg",
    "277095.jpg", "289011.jpg", "302022.jpg", "317043.jpg", "335094.jpg",
    "35091.jpg", "370036.jpg", "385022.jpg", "41029.jpg", "45077.jpg",
    "55075.jpg", "65019.jpg", "69022.jpg", "79073.jpg", "87015.jpg",
)  # fmt: skip

# the colour frames of the depth folder (the rest of it is depth maps and calibration)
OTHER_CAMERAS = (
    "kitti_object_3frames/image_2/000000.png",
    "kitti_object_3frames/image_2/000001.png",
    "kitti_object_3frames/image_2/000002.png",
    "middlebury2006_aloe_opencv/aloeL.jpg",
    "middlebury2003_ceschini/im2.png",
    "rgbd_open3d_samples/SUN_color.jpg",
    "rgbd_open3d_samples/TUM_color.png",
)


def every_tenth(names: Sequence[str]) -> tuple[str, ...]:
    """The rule that made :data:`BSD400_VAL`: every 10th of the sorted names, from the first."""
    return tuple(sorted(names)[0::10])


@dataclass(frozen=True)
class PhotoSet:
    """A named set: ``folder`` under the shared data, its ``role``, and the files it keeps
    (``include``: only these; ``exclude``: all but these; relative names)."""

    name: str
    folder: str
    role: str
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()


SETS = {
    s.name: s
    for s in (
        PhotoSet("bsd400_val", "bsds400", "validation", include=BSD400_VAL),
        PhotoSet("bsd400_train", "bsds400", "training", exclude=BSD400_VAL),
        PhotoSet("kodak24", "kodak24", "test"),
        PhotoSet("mcmaster18", "mcmaster18", "test"),
        PhotoSet("cbsd68", "cbsd68", "test"),
        PhotoSet("other_cameras", "depth", "test", include=OTHER_CAMERAS),
    )
}
# the lists a source's `exclude` / `include` may name (the files each set keeps)
SPLITS = {"bsd400_val": BSD400_VAL}


def shared_data(key: str, name: str) -> Path:
    """``../shared/data`` (from the working directory or the project root), or a one-line
    error naming ``key = name`` when this checkout has none."""
    root = preset_path(SHARED_DATA)
    require(
        root.is_dir(),
        f"{key} = {name}: a named set of the project's shared data ({SHARED_DATA}), which "
        "this checkout does not have; give a folder of photographs instead",
    )
    return root


def photo_set(name: str, key: str = "images") -> PhotoSet:
    """The set called ``name``; an unknown name is a one-line error listing the known ones."""
    require(name in SETS, f"{key} = {name!r}: not a named set ({', '.join(SETS)}) nor a folder")
    return SETS[name]


def set_folder(name: str, key: str = "images") -> Path:
    """The folder of set ``name`` in the shared data (must exist)."""
    s = photo_set(name, key)
    folder = shared_data(key, name) / s.folder
    require(folder.is_dir(), f"{key} = {name}: {folder} does not exist")
    return folder


def resolve_names(entries: Sequence[str] | str | None, key: str) -> set[str]:
    """File names (relative to a source folder) of ``entries``: each a name of
    :data:`SPLITS` (its files) or a relative file name."""
    if entries is None:
        return set()
    if isinstance(entries, str):
        entries = [entries]
    out: set[str] = set()
    for e in entries:
        require(isinstance(e, str) and e, f"{key}: {e!r} is neither a split name nor a file name")
        out |= set(SPLITS[e]) if e in SPLITS else {e}
    return out


def select_files(
    files: Sequence[Path], root: Path, include, exclude, where: str = "source"
) -> list[Path]:
    """``files`` (under ``root``) kept by ``include`` (only these; None = all) and
    ``exclude`` (none of these); every name either lists must be one of ``files``."""
    rel = {f.relative_to(root).as_posix(): f for f in files}
    keep = set(rel)
    for key, entries in ((f"{where}.include", include), (f"{where}.exclude", exclude)):
        names = resolve_names(entries, key)
        missing = sorted(names - set(rel))
        require(
            not missing,
            f"{key} names {len(missing)} file(s) not in {root} (e.g. {missing[:3]}); "
            "a split must name files of the folder it splits",
        )
        if entries is None:
            continue
        keep = keep & names if key.endswith("include") else keep - names
    return [f for f in files if f.relative_to(root).as_posix() in keep]  # order kept


__all__ = [
    "BSD400_VAL",
    "ROLES",
    "SETS",
    "SHARED_DATA",
    "SPLITS",
    "PhotoSet",
    "every_tenth",
    "photo_set",
    "resolve_names",
    "select_files",
    "set_folder",
    "shared_data",
]
