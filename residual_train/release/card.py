"""The model card: what an export says about its network, typed (:class:`ModelCard`).

``card.json`` is written by :mod:`~residual_train.release.export` and read by deployment,
the service, the evaluation and the registry, all through :class:`ModelCard`: each entry
they use is a checked, typed attribute (a missing optional entry has its default), so no
reader spells out keys and defaults of its own.

The JSON stays the record: a card keeps the mapping it was made from, in its order and with
every entry this version does not know, and :meth:`ModelCard.to_json` writes it back byte
for byte (``json.dumps(..., indent=2, default=str)`` and a newline, as exports always
wrote). Code outside the package may still index a card like the JSON mapping
(``card["parity"]["max_abs_diff"]``): a card is a read-only :class:`~collections.abc.Mapping`
over that JSON.

Entries (docs/guides/deploy.md): ``components`` (heads, in the graph's output order),
``channels``, ``inputs`` (``x`` [, ``sigma``] [, ``field``]), ``outputs`` (``R_<head>``),
``layout`` (``rgb`` or ``rggb``: packed Bayer planes), ``cfa``, ``scale``, ``stride``,
``model`` (the architecture's settings), ``field`` (:class:`FieldTable`), ``noise_model``
(:class:`NoiseTable`), ``lens``, ``component_settings``, ``dropped_heads``, ``dataset``,
``training``, ``metrics``, ``checkpoint``, ``parity``, ``package_version``,
``torch_version``, ``precision``, ``device`` (a reduced graph's figures), ``files``
(sha256 of each file), and ``registry_version`` where a registry added it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as _field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from data_gen.core.errors import InputError, require
from data_gen.core.values import integer
from data_gen.optics.symmetry import GEOMETRIC
from data_gen.shards import read_mapping

if TYPE_CHECKING:
    from data_gen.noise import NoiseModel

FORMAT = "residual-train-model/1"
REQUIRED = ("components", "channels")  # what every reader needs


def _strings(v: Any, where: str) -> tuple[str, ...]:
    require(
        isinstance(v, list) and all(isinstance(s, str) for s in v),
        f"{where} = {v!r}: a list of names",
    )
    return tuple(v)


def _mapping(v: Any, where: str) -> dict | None:
    require(v is None or isinstance(v, dict), f"{where} = {v!r}: a mapping or null")
    return v


class _Json(BaseModel):
    """An entry of ``card.json`` as the card reads it (entries it does not read are kept)."""

    model_config = ConfigDict(extra="allow", frozen=True)


ISO = Annotated[list[StrictInt | StrictFloat], Field(min_length=1)]  # ints stay ints
_NOISE_SHAPE = "iso (N values) and a, b (N rows of one value per channel) must be lists of numbers"


class _NoiseJson(_Json):
    """The card's ``noise_model`` entry (:class:`NoiseTable`); ``ob``, ``white``: kept."""

    iso: ISO
    a: list[list[float]]
    b: list[list[float]]
    source: dict | None = None


class _FieldJson(_Json):
    """The card's ``field`` entry (:class:`FieldTable`); ``positions``, ``maps``: kept."""

    kernels: StrictInt
    table: list[list[float]]


class _FieldCard(_Json):
    """A card whose model reads field maps: it has a ``field`` entry."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    field: _FieldJson


@dataclass(frozen=True, eq=False)
class NoiseTable:
    """The training sensor's ``σ²(v) = a·max(v, 0) + b`` over ISO: ``a``, ``b`` ``(N, C)`` at
    the ``N`` increasing ``iso`` values (linear in ISO between them; the numbers as the card
    writes them); ``source``: the sensor settings it was computed from (``{}`` when the card
    has none)."""

    iso: tuple[float, ...]
    a: np.ndarray
    b: np.ndarray
    source: dict

    @classmethod
    def from_json(cls, nm: Any, where: str) -> NoiseTable:
        require(isinstance(nm, dict), f"{where} = {nm!r}: a table with iso, a and b")
        try:
            j = _NoiseJson.model_validate(nm)
        except ValidationError as e:
            bad = {x["loc"][0] for x in e.errors()}
            require(bad == {"source"}, f"{where}: {_NOISE_SHAPE}")
            raise InputError(f"{where}.source = {nm['source']!r}: a mapping or null") from None
        try:
            a, b = np.asarray(j.a, float), np.asarray(j.b, float)
        except ValueError:  # rows of different lengths
            a = b = np.zeros(0)
        require(
            a.ndim == 2 and a.shape == b.shape and len(a) == len(j.iso),
            f"{where}: {_NOISE_SHAPE}",
        )
        return cls(tuple(j.iso), a, b, j.source or {})

    @property
    def range(self) -> tuple[float, float]:
        """The lowest and highest ISO of the table."""
        return float(self.iso[0]), float(self.iso[-1])

    def default_iso(self) -> float:
        """The ISO used when none is given: the geometric middle of the table's range."""
        lo, hi = self.range
        return float(np.sqrt(lo * hi))

    def at(self, iso: float | None = None) -> NoiseModel:
        """The noise model at ``iso`` (linear interpolation between the table's points;
        default :meth:`default_iso`); an ISO outside the table is refused."""
        from data_gen.noise import NoiseModel, at_iso

        iso = self.default_iso() if iso is None else float(iso)
        lo, hi = self.range
        require(
            lo <= iso <= hi, f"iso = {iso:g} is outside the model's training range {lo:g}..{hi:g}"
        )
        A, B = at_iso(iso, self.iso, self.a), at_iso(iso, self.iso, self.b)
        return NoiseModel(A.astype(np.float32), B.astype(np.float32))


@dataclass(frozen=True, eq=False)
class FieldTable:
    """How a field-aware model's ``field`` input is built: ``table`` ``(P, K)`` float32, the
    ``K = kernels`` mixing weights of each of the ``P`` bank PSFs
    (``field[k, y, x] = table[psf_index(y, x)][k]``)."""

    kernels: int
    table: np.ndarray

    @classmethod
    def of_card(cls, d: Mapping, where: str) -> FieldTable:
        """The table of the card mapping ``d`` (the card of a field-aware model)."""
        try:
            j = _FieldCard.model_validate(d).field
        except ValidationError:
            j = None
        return cls._of(j, where)

    @classmethod
    def _of(cls, j: _FieldJson | None, where: str) -> FieldTable:
        try:
            table = np.asarray(j.table if j else [], np.float32)
        except ValueError:  # rows of different lengths
            table = np.zeros(0, np.float32)
        require(
            j is not None and table.ndim == 2 and table.shape[1] == j.kernels,
            f"{where}: the model reads field maps but the card's field entry has no "
            "(positions, kernels) table",
        )
        return cls(j.kernels, table)

    def maps(self, psf_index: np.ndarray) -> np.ndarray:
        """``(K, H, W)`` float32 position maps of a ``(H, W)`` map of bank indices."""
        idx = np.asarray(psf_index)
        n = len(self.table)
        require(
            idx.ndim == 2 and idx.min() >= 0 and idx.max() < n,
            f"psf_index: a (H, W) map of bank indices in 0..{n - 1}, got shape {idx.shape}",
        )
        return np.ascontiguousarray(np.moveaxis(self.table[idx], -1, 0))


@dataclass(frozen=True, eq=False)
class ModelCard(Mapping):
    """A model card, typed (module docstring). Made by :meth:`from_dict` or :meth:`read`;
    :meth:`with_entries` adds entries; the JSON mapping it came from is :attr:`raw`."""

    components: tuple[str, ...]
    channels: int
    inputs: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ()
    layout: str = "rgb"
    cfa: str | None = None
    scale: str | None = None
    stride: int = 1
    model: dict = _field(default_factory=dict)
    field: FieldTable | None = None
    noise_model: NoiseTable | None = None
    lens: Any = None
    component_settings: dict | None = None
    dataset: dict | None = None
    training: dict | None = None
    metrics: dict = _field(default_factory=dict)
    parity: dict | None = None
    package_version: str = ""
    torch_version: str | None = None
    precision: str = "fp32"
    device: dict | None = None
    files: dict = _field(default_factory=dict)
    registry_version: str | None = None
    raw: dict = _field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(
        cls, d: Mapping, where: str = "model card", required: tuple[str, ...] = REQUIRED
    ) -> ModelCard:
        """The card of the JSON mapping ``d``; ``where`` names it in errors. Every key of
        ``required`` must be present; every entry present is checked."""
        d = dict(d)
        for key in (*REQUIRED, *required):
            require(key in d, f"{where}: the card lacks {key!r}")
        channels = d["channels"]
        require(
            isinstance(channels, int) and not isinstance(channels, bool) and channels > 0,
            f"{where}: channels = {channels!r}: a positive integer",
        )
        given = {k: v for k, v in d.items() if k in ENTRIES and v is not None}
        # a missing or null entry has the field's default (here, in one place)
        typed = {k: ENTRIES[k](v, f"{where}: {k}") for k, v in given.items()}
        card = cls(**typed, channels=channels, raw=d)
        if "field" in card.inputs:  # a field-aware model: its table must be there
            card = replace(card, field=FieldTable.of_card(d, where))
        return card

    @classmethod
    def read(cls, path: str | Path, required: tuple[str, ...] = REQUIRED) -> ModelCard:
        """The card in the file ``path`` (``card.json``)."""
        return cls.from_dict(read_mapping(Path(path), "model card"), str(path), required)

    def with_entries(self, **entries: Any) -> ModelCard:
        """This card with ``entries`` set (new ones after the others, as JSON keeps them)."""
        return ModelCard.from_dict({**self.raw, **entries})

    def to_json(self) -> str:
        """``card.json``'s text: the JSON the card was made from, as exports write it."""
        return json.dumps(self.raw, indent=2, default=str) + "\n"

    def trained_geometric(self) -> str | None:
        """The flips and turns training augmented with (``data.geometric``: ``lens``, ``all``
        or ``none``; ``none`` when ``data.augment`` was off); None when the card does not say."""
        data = (self.training or {}).get("data")
        if not isinstance(data, dict):
            return None
        if data.get("augment") is False:
            return "none"
        return str(data["geometric"]) if data.get("geometric") in GEOMETRIC else None

    def noise_kind(self) -> str:
        """The name of the training sensor's noise kind (``sensor.noise`` in the noise table's
        source; the default Poisson–Gaussian when the card names none)."""
        from data_gen.noise_kinds import kind_name

        return kind_name(self.noise_model.source if self.noise_model else {})

    def sensor_noise(self, where: str = "the model card") -> NoiseTable:
        """The noise table; refused in one line when the card has none."""
        require(self.noise_model is not None, f"{where} has no sensor noise model")
        return self.noise_model

    # ---- the JSON mapping, read-only (for code that indexes cards as JSON) -----------------
    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def _same(v: Any, where: str) -> Any:
    return v


def _text(v: Any, where: str) -> str:
    return str(v)


# entry -> how the card reads it (one line names a bad one); ``field`` depends on ``inputs``
ENTRIES: dict[str, Any] = {
    "components": _strings,
    "inputs": _strings,
    "outputs": _strings,
    "layout": _text,
    "cfa": _same,
    "scale": _same,
    "stride": lambda v, where: integer(v, where, 1),
    "model": _mapping,
    "noise_model": lambda v, where: NoiseTable.from_json(v, where),
    "lens": _same,
    "component_settings": _mapping,
    "dataset": _mapping,
    "training": _mapping,
    "metrics": _mapping,
    "parity": _mapping,
    "package_version": _text,
    "torch_version": _same,
    "precision": _text,
    "device": _mapping,
    "files": _mapping,
    "registry_version": _same,
}


def as_card(card: ModelCard | Mapping, where: str = "model card") -> ModelCard:
    """``card`` as a :class:`ModelCard` (a JSON mapping is parsed)."""
    return card if isinstance(card, ModelCard) else ModelCard.from_dict(card, where)
