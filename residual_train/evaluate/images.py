"""Real photographs for evaluation: scikit-image's bundled ones, the project's named sets
(:data:`data_gen.splits.SETS`: ``bsd400_val`` for choosing, ``kodak24`` / ``mcmaster18`` /
``cbsd68`` / ``other_cameras`` for reporting) or folders of files.

Images are decoded from sRGB to linear light and shrunk by area averaging (which removes
most of their own blur and JPEG artefacts), like the generator's ``folder`` source.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_gen.core.errors import require
from data_gen.core.paths import preset_path
from data_gen.sources import FolderSource, shrink, srgb_to_linear
from data_gen.splits import SETS, photo_set, set_folder

# natural photographs bundled inside scikit-image's wheel (no download)
BUILTIN = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")


def _builtin(name: str) -> np.ndarray:
    import skimage.data

    img = (
        skimage.data.stereo_motorcycle()[0]
        if name == "motorcycle"
        else getattr(skimage.data, name)()
    )
    return np.moveaxis(np.asarray(img, np.float32) / 255.0, 2, 0)


def load_images(
    spec: str | Sequence[str],
    shrink_factor: float = 2.0,
    linearize: bool = True,
    max_images: int | None = None,
    max_size: int | None = None,
) -> list[tuple[str, np.ndarray]]:
    """``[(name, (3, H, W) linear float32)]`` for ``'builtin'``, a named set, a folder, or a
    list of these.

    Folders are read recursively in sorted order (PNG / TIFF / JPEG; float TIFF is taken
    as linear); names are ``<folder>/<file stem>`` (``<set>/<file stem>`` for a named set,
    with the file's sub-folders when it has them: the part before the first ``/`` is what
    :func:`image_set` reports per set). ``max_images`` keeps the first N of
    each folder; ``max_size`` centre-crops each image to at most that many pixels a side.
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    require(bool(specs), "images is empty: give builtin, a folder, or a list of folders")
    out: list[tuple[str, np.ndarray]] = []
    for s in specs:
        if s == "builtin":
            names = BUILTIN[:max_images] if max_images else BUILTIN
            for n in names:
                img = _builtin(n)
                out.append(
                    (
                        f"builtin/{n}",
                        shrink(srgb_to_linear(img) if linearize else img, shrink_factor),
                    )
                )
            continue
        if s in SETS:
            ps = photo_set(s)
            src = FolderSource(
                str(set_folder(s)),
                linearize,
                shrink_factor,
                include=ps.include,
                exclude=ps.exclude or None,
                where=f"images {s}",
            )
            label = s
        else:
            root = preset_path(s)
            require(
                root.is_dir(),
                f"images = {s!r}: not a folder, nor builtin or a named set ({', '.join(SETS)})",
            )
            src = FolderSource(str(root), linearize, shrink_factor)
            label = Path(s).name
        files = src.files[:max_images] if max_images else src.files
        for f in files:
            frame = src.load(f)
            out.append((f"{label}/{Path(frame.name).with_suffix('')}", frame.pixels))
    if max_size:
        out = [(n, _centre(im, int(max_size))) for n, im in out]
    return out


def image_set(name: str) -> str:
    """The set an evaluated image belongs to: its name up to the first ``/``."""
    return name.split("/", 1)[0]


def set_role(label: str) -> str:
    """``validation`` / ``test`` / ``training`` for a named set, else ``other``."""
    return SETS[label].role if label in SETS else "other"


def _centre(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[1:]
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return np.ascontiguousarray(img[:, y0 : y0 + size, x0 : x0 + size])
