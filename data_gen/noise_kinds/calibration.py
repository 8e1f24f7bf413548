"""A calibration's dark-frame statistics (``dark.json`` of ``residual-train calibrate noise``,
format in docs/your-camera.md) as the noise kinds read them: per ISO and Bayer plane R,
Gr, Gb, B, in DN at that ISO; the dark shading maps and the dark frames themselves are
loaded when first needed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationError

from data_gen.core.errors import InputError, require
from data_gen.core.typed import Record


@dataclass
class DarkISO:
    """One ISO of a dark calibration (DN per plane ``(4,)``)."""

    iso: float
    black: np.ndarray
    read_var: np.ndarray  # temporal variance per photosite: read + row + black jitter + rounding
    row_sigma: np.ndarray  # σ of row means (it holds the per-frame black jitter too)
    black_frame_std: np.ndarray  # spread of the per-frame dark level
    tukey_lambda: np.ndarray
    shading_path: Path
    frame_paths: list[Path]
    bad: list[tuple[int, int]]  # [row, column] photosites of the mosaic
    _shading: np.ndarray | None = field(default=None, repr=False)

    def shading(self) -> np.ndarray:
        """The dark shading ``(4, h, w)`` float32, DN above ``black`` (loaded once)."""
        if self._shading is None:
            require(self.shading_path.is_file(), f"dark shading {self.shading_path} is missing")
            s = np.load(self.shading_path, allow_pickle=False)
            require(
                s.ndim == 3 and s.shape[0] == 4,
                f"{self.shading_path}: a dark shading is (4, H/2, W/2), got {s.shape}",
            )
            self._shading = s.astype(np.float32)
        return self._shading


class ShapeRecord(Record):
    kind: str
    lambda_: float | None = Field(None, alias="lambda")

    @property
    def tukey_lambda(self) -> float:
        """λ of the read-noise shape (a normal's 0.14 when it is Gaussian)."""
        return self.lambda_ if self.kind == "tukey_lambda" else 0.14


class BadPixels(Record):
    hot: list[tuple[int, int]]
    cold: list[tuple[int, int]]
    noisy: list[tuple[int, int]]
    stuck: list[tuple[int, int]]


class DarkIsoRecord(Record):
    """One ISO of ``dark.json`` (written by :func:`data_gen.calibrate.noise.write_dark`)."""

    black: list[float]
    read_var_dn2: list[float]
    row_sigma_dn: list[float]
    black_error_frame_std_dn: list[float]
    shape: list[ShapeRecord]
    bad_pixels: BadPixels
    shading_file: str
    frame_files: list[str]
    frame_paths: list[str] | None = None  # absent in files written before it existed


class _Input(Record):
    file: str


class NoiseInputs(Record):
    """What ``noise.json`` says of its inputs."""

    inputs: list[_Input] = Field(default_factory=list)


def _frame_paths(doc_dir: Path, names: list[str], listed: list[str] | None) -> list[Path]:
    """The dark frames' files: ``frame_paths`` when dark.json lists them, else the names
    found in noise.json's inputs beside it, else beside dark.json."""
    if listed:
        return [Path(p) for p in listed]
    inputs = {}
    nj = doc_dir / "noise.json"
    if nj.is_file():
        try:
            for it in NoiseInputs.model_validate(json.loads(nj.read_text())).inputs:
                inputs[Path(it.file).name] = Path(it.file)
        except (OSError, json.JSONDecodeError, ValidationError):
            inputs = {}
    return [inputs.get(n, doc_dir / n) for n in names]


class DarkCalibration:
    """``dark.json`` at ``path``: :class:`DarkISO` per calibrated ISO, sorted."""

    def __init__(self, path: str | Path, where: str = "sensor.dark") -> None:
        self.path = Path(str(path)).expanduser()
        require(
            self.path.is_file(),
            f"{where} = {str(path)!r}: no such file (the dark.json of residual-train calibrate noise)",
        )
        try:
            doc = json.loads(self.path.read_text())
            isos = doc["isos"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{where} = {str(path)!r}: not a dark.json ({e})") from None
        entries = []
        for key, r in isos.items():
            try:
                iso = float(key)
            except ValueError:
                raise InputError(
                    f"{where}: {self.path} holds dark frames of ISO {key!r}; the noise kinds "
                    "need the ISO (calibrate again with iso=VALUE)"
                ) from None
            try:
                r = DarkIsoRecord.model_validate(r)
            except ValidationError as e:
                err = e.errors()[0]
                what = ".".join(str(p) for p in err["loc"])
                raise InputError(f"{where}: {self.path} ISO {key}: {what}: {err['msg']}") from None
            b = r.bad_pixels
            entries.append(
                DarkISO(
                    iso,
                    np.asarray(r.black, np.float64),
                    np.asarray(r.read_var_dn2, np.float64),
                    np.asarray(r.row_sigma_dn, np.float64),
                    np.asarray(r.black_error_frame_std_dn, np.float64),
                    np.asarray([sh.tukey_lambda for sh in r.shape], np.float64),
                    self.path.parent / r.shading_file,
                    _frame_paths(self.path.parent, r.frame_files, r.frame_paths),
                    [tuple(p) for p in (*b.hot, *b.cold, *b.noisy, *b.stuck)],
                )
            )
        require(bool(entries), f"{where}: {self.path} holds no ISO")
        self.entries = sorted(entries, key=lambda e: e.iso)
        self.isos = np.array([e.iso for e in self.entries])

    def table(self, attr: str) -> np.ndarray:
        """``(n_iso, 4)`` of one per-plane statistic."""
        return np.stack([getattr(e, attr) for e in self.entries])
