"""Training data: HDF5 shards -> batches of inputs, residual targets and metadata.

* :class:`ShardDataset` is picklable and opens its HDF5 files lazily, once per
  process (keyed by pid), so DataLoader workers started by ``fork`` or ``spawn``
  never share a handle.
* :class:`EpochSampler` permutes the samples with a seed derived from (seed, epoch),
  gives each rank a disjoint slice, and hands every sample an augmentation seed
  derived from (seed, epoch, index): data order and augmentations are identical
  whatever the number of workers, and a resumed run sees exactly what an
  uninterrupted one would.
* :class:`ResidualDataModule` reads and checks ``manifest.json`` (a
  :class:`~data_gen.manifest.Manifest`) and splits train /
  validation by shard. With ``onthefly.enabled`` the training batches are rendered on the
  training device instead (:mod:`data_gen.onthefly`, after the batch number reaches the
  device: ``on_after_batch_transfer``), with the generation config of the dataset's own
  shards unless told otherwise; validation still reads the fixed shards.

A batch is a dict of float32 tensors ``(B, C, P, P)``: ``x`` (the input), ``clean``,
``signal`` (the input without its noise), one target ``R_<c>`` per component of the
dataset, optionally ``sigma`` (the per-pixel noise level of ``x``), plus ``iso`` ``(B,)``,
``a``/``b`` ``(B, C)`` noise parameters and ``id`` ``(B, 2)`` = (shard, index); with
``psf_index=True`` also ``psf_index`` ``(B,)``: the bank PSF each patch shows (its ``meta``
PSF, mapped through the patch's flip / turn), what a field-aware model reads -- or, on the
fly with ``psf_per=block``, ``(B, P, P)``: each pixel's.

* Schema v1 (blur, noise): ``x = noise_blur``, ``R_blur = noise − noise_blur``,
  ``R_noise = blur − noise_blur``; the batch also holds ``blur`` and ``noise``.
* Schema v2 (any components, :mod:`data_gen.chain`): ``x = input`` and, with
  ``data.targets=peeling`` (default), ``R_c = before_c − before_<next>`` (``before`` of the
  input is the input itself): the residuals telescope, ``x + Σ R_c = clean``, and are what
  :func:`residual_train.deploy.compose.compose` composes; ``leave_one_out``:
  ``R_c = without_c − input`` (the image with only ``c`` removed; the two agree for the
  last component and for lens blur followed by noise).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from data_gen.chain import stored_names, stored_residuals
from data_gen.components import V1 as V1_COMPONENTS
from data_gen.core.errors import InputError, require
from data_gen.core.paths import bank_cache_dir
from data_gen.manifest import ShardEntry, ShardHeader
from data_gen.noise import NoiseModel
from data_gen.optics.symmetry import (
    ALL,
    NAMES,
    augmentation_transforms,
    dihedral,
    transform_table,
)
from data_gen.sensor import normalised_ab
from data_gen.shards import read_manifest, shard_file_problem
from residual_train.data_settings import DataSettings
from residual_train.typed import completed, parse


def residual_targets(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """docs/design.md §3: ``R_blur = noise − noise_blur``, ``R_noise = blur − noise_blur``."""
    return {"blur": p["noise"] - p["noise_blur"], "noise": p["blur"] - p["noise_blur"]}


def batch_arrays(
    p: Mapping[str, np.ndarray], components: Sequence[str], mode: str = "peeling"
) -> dict[str, np.ndarray]:
    """``x``, ``clean``, ``signal`` and ``R_<c>`` of one sample's stored arrays (v1 or v2;
    v1 also keeps ``blur`` and ``noise``)."""
    if "noise_blur" in p:
        return {
            "x": p["noise_blur"],
            **{k: p[k] for k in ("clean", "blur", "noise")},
            "signal": p["blur"],
            **{f"R_{h}": v for h, v in residual_targets(p).items()},
        }
    signal = p["without_noise"] if "noise" in components else p["input"]
    out = {"x": p["input"], "clean": p["clean"], "signal": signal}
    out.update({f"R_{c}": v for c, v in stored_residuals(p, components, mode).items()})
    return out


def noise_params(meta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised noise parameters ``A``, ``B`` ``(..., C)`` float32 of one ``meta`` record
    or an array of them (raw-DN ``k0``, ``k1`` at ISO 100): ``A = k1·g/span``,
    ``B = k0·g/span²`` with ``g = ISO/100`` and ``span = white − black``."""
    a, b = normalised_ab(
        meta["k0"],
        meta["k1"],
        meta["iso"][..., None],
        meta["ob"][..., None],
        meta["white"][..., None],
    )
    return a.astype(np.float32), b.astype(np.float32)


def augment(
    arrays: dict[str, np.ndarray],
    crop: int,
    seed: int,
    random: bool,
    transforms: Sequence[int] = ALL,
) -> dict:
    """Crop ``(C, P, P)`` arrays to ``crop`` and flip / rotate them, identically.

    ``random=False``: centre crop, no transform (validation). ``transforms``: the dihedral
    transforms (:mod:`data_gen.optics.symmetry`) to draw from, uniformly — the lens's
    symmetries, so that a transformed patch still shows a blur the lens makes; ``(0,)`` =
    crop only (packed Bayer planes: a flip or rotation would change the CFA phase).
    """
    p = next(iter(arrays.values())).shape[-1]
    y, x, t = augment_draw(p, crop, seed, random, transforms)
    if not random:
        return {k: v[:, y : y + crop, x : x + crop] for k, v in arrays.items()}
    return {
        k: np.ascontiguousarray(dihedral(v[:, y : y + crop, x : x + crop], t))
        for k, v in arrays.items()
    }


def augment_draw(
    p: int, crop: int, seed: int, random: bool, transforms: Sequence[int] = ALL
) -> tuple[int, int, int]:
    """What :func:`augment` does to a ``p``-pixel patch: crop top-left ``y``, ``x`` and the
    dihedral transform ``t``."""
    if not random:
        o = (p - crop) // 2
        return o, o, 0
    rng = np.random.default_rng(seed)
    y, x = (int(v) for v in rng.integers(0, p - crop + 1, 2))
    t = int(transforms[int(rng.integers(len(transforms)))]) if len(transforms) > 1 else 0
    return y, x, t


class ShardDataset(Dataset):
    """Samples of a list of shards; items are addressed by ``(index, augmentation seed)``.

    ``shards``: manifest entries (:class:`~data_gen.manifest.ShardEntry`)."""

    def __init__(
        self,
        data_dir: str | Path,
        shards: Sequence[ShardEntry],
        crop: int,
        augment: bool,
        sigma_map: bool = False,
        transforms: Sequence[int] = ALL,
        components: Sequence[str] = V1_COMPONENTS,
        targets: str = "peeling",
        psf_perm: np.ndarray | None = None,
    ) -> None:
        self.dir = Path(data_dir)
        # (8, N): the bank PSF a patch of PSF j shows after transform t (psf_perm[t, j]);
        # items then carry `psf_index`, that index (a field-aware model's position)
        self.psf_perm = psf_perm
        self.components, self.targets = tuple(components), targets
        self.stored = stored_names(self.components)
        self.transforms = tuple(transforms)
        self.names = [s.name for s in shards]
        self.shard_ids = [s.index for s in shards]
        counts = [s.samples for s in shards]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.crop, self.augment, self.sigma_map = crop, augment, sigma_map
        self._files: dict[int, h5py.File] = {}
        self._meta: dict[int, np.ndarray] = {}
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:  # never pickle open handles
        state = self.__dict__.copy()
        state["_files"], state["_meta"], state["_pid"] = {}, {}, None
        return state

    def _file(self, k: int) -> h5py.File:
        if self._pid != os.getpid():  # first use in this process (worker or DDP rank)
            self._files, self._meta, self._pid = {}, {}, os.getpid()
        if k not in self._files:
            self._files[k] = h5py.File(self.dir / self.names[k], "r")
            self._meta[k] = self._files[k]["meta"][:]  # small; read once per process
        return self._files[k]

    def locate(self, index: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return k, int(index - self.offsets[k])

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, item)
        k, j = self.locate(index)
        f = self._file(k)
        arrays = {name: f[name][j].astype(np.float32) for name in self.stored}
        meta = self._meta[k][j]
        p = next(iter(arrays.values())).shape[-1]
        t = augment_draw(p, self.crop, seed, self.augment, self.transforms)[2]
        arrays = augment(arrays, self.crop, seed, self.augment, self.transforms)
        a, b = noise_params(meta)
        arrays = batch_arrays(arrays, self.components, self.targets)
        out = {
            **{name: torch.from_numpy(v) for name, v in arrays.items()},
            "iso": torch.tensor(float(meta["iso"])),
            "a": torch.from_numpy(a),
            "b": torch.from_numpy(b),
            "id": torch.tensor([self.shard_ids[k], j]),
        }
        if self.sigma_map:  # the noise level the input's brightness implies (known at deployment)
            out["sigma"] = torch.from_numpy(NoiseModel(a, b).std(arrays["x"]))
        if self.psf_perm is not None:
            out["psf_index"] = torch.tensor(int(self.psf_perm[t, int(meta["psf_index"])]))
        return out


class EpochSampler(Sampler):
    """Deterministic per-epoch permutation, split disjointly across ranks.

    Like ``DistributedSampler`` (padding by wrap-around so every rank gets the same
    count), but yields ``(index, aug_seed)``. Lightning calls :meth:`set_epoch`.
    ``skip``: called when an epoch's iteration starts, the number of this epoch's samples
    already trained on (a run resumed mid-epoch continues where it stopped).
    """

    def __init__(
        self,
        n: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world: int = 1,
        skip: Callable[[], int] | None = None,
    ) -> None:
        self.n, self.seed, self.shuffle, self.rank, self.world = n, seed, shuffle, rank, world
        self.epoch = 0
        self.per_rank = math.ceil(n / world)
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # a generator: the epoch is read at the first sample, not when the iterator is made
        # (a run resumed from an epoch's end makes it before Lightning calls set_epoch)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world
        order = (order * math.ceil(total / max(1, self.n)))[:total]
        mine = order[self.rank : total : self.world]
        base = (self.seed * 1_000_003 + self.epoch) * 2**20
        done = self.skip() if self.skip is not None else 0
        yield from ((i, base + i) for i in mine[done:])


class BatchNumbers(Dataset):
    """Item ``k`` is the global batch number ``k`` as a ``(1,)`` int64 tensor: what an
    on-the-fly training loader hands to the device, where the batch is rendered."""

    def __len__(self) -> int:  # pragma: no cover - addressed through BatchNumberSampler
        return 2**62

    def __getitem__(self, k: int) -> torch.Tensor:
        return torch.tensor([k], dtype=torch.int64)


class BatchNumberSampler(Sampler):
    """``steps`` global batch numbers per epoch, disjoint across ranks: epoch ``e``,
    step ``i`` of rank ``r`` gets ``(e·steps + i)·world + r``. Lightning calls
    :meth:`set_epoch`; ``skip`` (as :class:`EpochSampler`'s, in batches) gives the steps of
    this epoch already trained on."""

    def __init__(
        self, steps: int, rank: int = 0, world: int = 1, skip: Callable[[], int] | None = None
    ) -> None:
        self.steps, self.rank, self.world, self.epoch = steps, rank, world, 0
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[int]:
        # a generator: the epoch is read at the first batch, not when the iterator is made
        # (a resumed Lightning run makes it before calling set_epoch)
        base = self.epoch * self.steps
        done = self.skip() if self.skip is not None else 0
        for i in range(done, self.steps):
            yield (base + i) * self.world + self.rank


# generator keys that a stored generation config may lack (data_gen.generate: runtime keys;
# and DEFAULT_ONLY_SETTINGS, stored only away from their default)
_GENERATOR_RUNTIME = ("renderer", "device", "normals", "components", "component")


def check_generator_keys(extra, stored: dict, where: str = "data.onthefly.generator") -> None:
    """``data.onthefly.generator`` updates the stored generation config: every key must be
    one of its settings (a typo would otherwise be merged in and never read). Nested
    mappings are checked against the stored ones unless they change their ``kind`` (a
    source or a sensor of another kind has its own settings, checked when it is built)."""
    from data_gen.generate import DEFAULT_ONLY_SETTINGS, RUNTIME_KEYS

    require(isinstance(extra, Mapping), f"{where} = {extra!r}: a mapping of generator settings")
    known = {*stored, *RUNTIME_KEYS, *_GENERATOR_RUNTIME, *DEFAULT_ONLY_SETTINGS}
    groups = {k: v for k, v in DEFAULT_ONLY_SETTINGS.items() if isinstance(v, dict)}
    _check_keys(extra, stored, known, where, groups=groups)


def _check_keys(
    extra: Mapping,
    stored: Mapping,
    known: set,
    where: str,
    in_source: bool = False,
    groups: Mapping | None = None,
) -> None:
    """Recursive step of :func:`check_generator_keys`; below ``source`` a mapping of a
    source kind also takes that kind's optional settings (``data_gen.sources.OPTIONAL_KEYS``:
    ``include`` / ``exclude`` / ``depth`` of a folder, which a stored config may lack);
    ``groups``: the optional settings of this level's groups (the top level's:
    ``data_gen.generate.DEFAULT_ONLY_SETTINGS``)."""
    from data_gen.sources import OPTIONAL_KEYS

    for key, value in extra.items():
        require(
            key in known,
            f"{where}.{key}: not a generator setting (the stored generation config has "
            f"{', '.join(sorted(map(str, known)))})",
        )
        old = stored.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(old, Mapping)
            and key != "component"
            and value.get("kind", old.get("kind")) == old.get("kind")
        ):
            below = in_source or key == "source"
            optional = (
                OPTIONAL_KEYS.get(old.get("kind"), ()) if below else (groups or {}).get(key, ())
            )
            _check_keys(value, old, {*old, *optional}, f"{where}.{key}", below)


def _split(
    shards: list[ShardEntry], val: int | float | list | str, all_allowed: bool = False
) -> tuple[list[ShardEntry], list[ShardEntry]]:
    """``val``: a number of shards (int), a fraction (float < 1), shard indices (list) or
    ``all``; every shard can go to validation only when ``all_allowed`` (on-the-fly)."""
    n = len(shards)
    if val == "all":
        require(all_allowed, "data.val_shards = all: only with data.onthefly.enabled=true")
        val = list(range(n))
    if isinstance(val, (list, tuple)):
        idx = {int(i) for i in val}
        bad = sorted(i for i in idx if not 0 <= i < n)
        require(not bad, f"data.val_shards lists {bad}, outside 0..{n - 1}")
    else:
        k = round(val * n) if isinstance(val, float) and val < 1 else int(val)
        top = n if all_allowed else n - 1
        require(0 <= k <= top, f"data.val_shards = {val}: need at least one training shard of {n}")
        idx = set(range(n - k, n))
    return [s for i, s in enumerate(shards) if i not in idx], [
        s for i, s in enumerate(shards) if i in idx
    ]


class ResidualDataModule(pl.LightningDataModule):
    """Train / validation loaders over a generated dataset directory."""

    def __init__(self, dir: str, seed: int = 0, psf_index: bool = False, **settings) -> None:
        """``dir`` and the other ``data`` settings (``conf/data/default.yaml``, whose defaults
        complete those not given: :class:`~residual_train.data_settings.DataSettings`);
        ``seed``: the run's. ``psf_index``: batches carry ``psf_index`` (the bank PSF each
        patch shows, after its flip / turn), what a model whose deconvolution knows where it
        is reads (set by training)."""
        super().__init__()
        s = parse(DataSettings, completed("data", {**settings, "dir": str(dir)}), "data")
        self.psf_index = bool(psf_index)
        self._perm: np.ndarray | None = None
        self._renderer = None
        self.targets, self.onthefly = s.targets, s.onthefly
        self.dir = Path(s.dir).expanduser()
        self._read_manifest(s.crop)
        self._check_files(s.verify)
        self.train_shards, self.val_shards = _split(
            list(self.manifest.shards), s.val_shards, s.onthefly.enabled
        )
        self.batch_size, self.val_batch_size = s.batch_size, s.val_batch_size or s.batch_size
        self.num_workers, self.start_method = s.num_workers, s.start_method
        self.augment_train, self.sigma_map, self.seed = s.augment, s.sigma_map, seed
        if s.onthefly.enabled:
            spe = s.onthefly.samples_per_epoch
            require(
                spe >= s.batch_size,
                f"data.onthefly.samples_per_epoch = {spe!r}: an integer >= data.batch_size",
            )
            # a bad generator config fails here, before training starts
            self._pipeline = self._onthefly_pipeline()
        self.transforms = self._transforms(s.geometric)

    def _read_manifest(self, crop: int | None) -> None:
        """``manifest.json``: the patch size, channels, components and layout of the
        dataset, and the crop (``data.crop``) checked against them."""
        self.manifest = m = read_manifest(self.dir)
        for key, value in (
            ("patch_size", m.patch_size),
            ("channels", m.channels),
            ("total_samples", m.total_samples),
        ):
            require(value is not None, f"{self.dir / 'manifest.json'}: manifest lacks {key!r}")
        self.patch = int(m.patch_size)
        self.channels = int(m.channels)
        self.components = m.components  # schema v1: blur, noise
        self.layout = m.layout  # older datasets: rgb
        self.crop = self.patch if crop is None else int(crop)
        # rendered on the fly, training patches may be larger than the stored ones
        # (validation then shows whole stored patches)
        self.train_crop = self.crop
        if self.onthefly.enabled:
            self.crop = min(self.crop, self.patch)
        require(
            0 < self.crop <= self.patch,
            f"data.crop = {crop}: the dataset's patches are {self.patch} px "
            f"({self.dir}); crop must be in 1..{self.patch}",
        )

    # ---- on-the-fly rendering ---------------------------------------------------------
    def _onthefly_pipeline(self):
        """The generator pipeline training batches are rendered with: the generation config
        stored in the first shard (what validation shows), updated with
        ``onthefly.generator``, and checked against the shards."""
        from omegaconf import OmegaConf

        from data_gen.generate import build_pipeline

        first = self.dir / self.manifest.shards[0].name
        with h5py.File(first, "r") as f:
            stored = ShardHeader.read(f).config
        require(stored is not None, f"{first}: stores no generation config (attrs.config)")
        cfg = yaml.safe_load(stored)
        extra = self.onthefly.generator
        if extra:
            check_generator_keys(extra, cfg)
            cfg = OmegaConf.to_container(OmegaConf.merge(cfg, extra), resolve=True)
        cfg.setdefault("bank_cache", str(bank_cache_dir()))
        cfg["progress"] = False
        pipe = build_pipeline(cfg)
        # every original can give a training patch: checked now, not at the first batch
        factor = 2 if pipe.cfa else 1
        need = self.train_crop * factor + pipe.bank.size - 1
        try:
            pipe.source.validate(need)
        except InputError as e:
            raise InputError(
                f"data.crop = {self.train_crop}: on-the-fly patches need originals of at least "
                f"{need} px (crop + PSF size - 1): {e}"
            ) from None
        for what, rendered, stored in (
            ("channels", pipe.stored_channels, self.channels),
            ("layout", pipe.cfg["layout"], self.layout),
            ("cfa", pipe.cfa, self.manifest.cfa),
            ("components", list(pipe.components), list(self.components)),
        ):
            require(
                rendered == stored,
                f"data.onthefly.generator: renders {what} {rendered!r}, the validation "
                f"shards in {self.dir} hold {stored!r}",
            )
        return pipe

    def renderer(self, device: torch.device):
        """The on-the-fly renderer on ``device`` (built on first use, in this process)."""
        from data_gen.onthefly import OnTheFlyRenderer

        r = self._renderer
        if r is None or r.device != torch.device(device):
            layout_factor = 2 if self._pipeline.cfa else 1
            r = OnTheFlyRenderer(
                self._pipeline,
                self.train_crop * layout_factor,
                self.batch_size,
                device,
                pool=self.onthefly.pool,
                seed=self.seed,
                transforms=self.transforms if self.augment_train else (0,),
                prefetch=self.onthefly.prefetch,
                threads=self.onthefly.threads,
                cache_bytes=int(self.onthefly.cache_gb * 2**30),
                targets="peeling" if self.targets == "peeling" else "both",
            )
            self._renderer = r
        return r

    def render_batch(self, k: int, device: torch.device) -> dict:
        """Training batch ``k`` rendered on ``device``: the keys of a shard batch, plus
        ``meta`` (the per-sample records a shard would hold)."""
        patches, meta, transforms, maps = self.renderer(device).render_with_transforms(k)
        a, b = noise_params(meta)
        out = {
            **batch_arrays(patches, self.components, self.targets),
            "iso": torch.from_numpy(meta["iso"].astype(np.float32)).to(device),
            "a": torch.from_numpy(a).to(device),
            "b": torch.from_numpy(b).to(device),
            "id": torch.stack([torch.full((len(meta),), k), torch.arange(len(meta))], 1).to(device),
            "meta": meta,
        }
        if self.sigma_map:
            out["sigma"] = NoiseModel(out["a"], out["b"]).std(out["x"])
        if self.psf_index:  # one per patch (B,), or with psf_per=block one per pixel (B, P, P)
            if maps is None:
                idx = self.psf_perm()[transforms, meta["psf_index"].astype(np.int64)]
            else:
                idx = self.psf_perm()[transforms[:, None, None], maps.astype(np.int64)]
            out["psf_index"] = torch.from_numpy(idx).to(device)
        return out

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if torch.is_tensor(batch) and self.onthefly.enabled:  # a batch number
            return self.render_batch(int(batch[0]), batch.device)
        return batch

    def teardown(self, stage: str) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _transforms(self, geometric: str) -> tuple[int, ...]:
        """Dihedral transforms for training augmentation (``data.geometric``).

        ``lens``: those under which the dataset's PSF bank (on the fly: the bank rendered
        with) maps onto itself (a flipped or
        rotated patch must still show a blur the lens makes); ``all``: the eight of the
        square; ``none``: crops only. Packed Bayer planes are never flipped or rotated.
        """
        if self.layout != "rgb":
            require(
                geometric != "all",
                f"data.geometric = all: {self.dir} holds packed Bayer planes, which a flip or "
                "rotation would give another CFA phase; use lens or none",
            )
            return (0,)
        if geometric != "lens":
            return augmentation_transforms(geometric)
        if self.onthefly.enabled:  # the lens rendered (a generator override may change it)
            return augmentation_transforms(geometric, self._pipeline.bank.psfs, bank_cache_dir())
        first = self.dir / self.manifest.shards[0].name
        with h5py.File(first, "r") as f:
            require(
                "psfs" in f,
                f"data.geometric = lens: {first} stores no PSF bank (psfs); use all or none",
            )
            return augmentation_transforms(geometric, f["psfs"][:], bank_cache_dir())

    @property
    def transform_names(self) -> list[str]:
        return [NAMES[t] for t in self.transforms]

    def _check_files(self, mode: str) -> None:
        for s in self.manifest.shards:
            problem = shard_file_problem(self.dir, s, mode)
            require(
                problem is None, f"{self.dir}/{problem}; check it with python -m data_gen.verify"
            )

    def mean_psf(self) -> np.ndarray | None:
        """Mean of the PSF bank the first shard was rendered with ``(C, K, K)`` (on the fly:
        of the bank rendered with); None for packed Bayer data (its planes are
        half-resolution mosaics, not blurred images)."""
        if self.layout != "rgb":
            return None
        if self.onthefly.enabled:
            return self._pipeline.bank.psfs.astype(np.float64).mean(axis=0)
        with h5py.File(self.dir / self.manifest.shards[0].name, "r") as f:
            if "psfs" not in f:
                return None
            return f["psfs"][:].astype(np.float64).mean(axis=0)

    def psf_bank(self) -> np.ndarray | None:
        """The PSF bank ``(N, C, K, K)`` the data was rendered with (the first shard's; on
        the fly: the bank rendered with); None for packed Bayer data or a shard without one."""
        if self.layout != "rgb":
            return None
        if self.onthefly.enabled:
            return np.asarray(self._pipeline.bank.psfs)
        with h5py.File(self.dir / self.manifest.shards[0].name, "r") as f:
            return f["psfs"][:] if "psfs" in f else None

    def psf_perm(self) -> np.ndarray:
        """``(8, N)``: the bank PSF a patch rendered with PSF ``j`` shows after dihedral
        transform ``t`` (:func:`data_gen.optics.symmetry.transform_index`; −1 for a
        transform training never applies)."""
        if self._perm is None:
            psfs = self.psf_bank()
            require(
                psfs is not None,
                f"{self.dir}: no RGB PSF bank in the shards (psfs): a model whose "
                "deconvolution knows where it is (model.field_kernels) needs one",
            )
            self._perm = transform_table(psfs, self.transforms if self.augment_train else (0,))
        return self._perm

    def dataset(self, train: bool) -> ShardDataset:
        shards = self.train_shards if train else self.val_shards
        return ShardDataset(
            self.dir,
            shards,
            self.crop,
            train and self.augment_train,
            self.sigma_map,
            transforms=self.transforms,
            components=self.components,
            targets=self.targets,
            psf_perm=self.psf_perm() if self.psf_index else None,
        )

    def _loader(self, train: bool) -> DataLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        if train and self.onthefly.enabled:
            steps = self.onthefly.samples_per_epoch // (self.batch_size * world)
            sampler = BatchNumberSampler(max(1, steps), rank, world, self._batches_done)
            return DataLoader(BatchNumbers(), batch_size=None, sampler=sampler)
        ds = self.dataset(train)
        skip = (lambda: self._batches_done() * self.batch_size) if train else None
        sampler = EpochSampler(len(ds), self.seed, train, rank, world, skip)
        ctx = None
        if self.num_workers > 0 and self.start_method is not None:
            ctx = torch.multiprocessing.get_context(self.start_method)
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.val_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            multiprocessing_context=ctx,
            persistent_workers=self.num_workers > 0,
            drop_last=train,
            pin_memory=torch.cuda.is_available(),
        )

    def _batches_done(self) -> int:
        """Batches of the current epoch this rank already trained on: the fit loop's count,
        which checkpoints keep (0 at an epoch's start; more in a run resumed in the middle
        of one, whose loader Lightning restarts from the epoch's beginning)."""
        t = self.trainer
        if t is None or not t.training:
            return 0
        return int(t.fit_loop.epoch_loop.batch_progress.current.ready)

    def train_dataloader(self) -> DataLoader:
        return self._loader(True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(False)
