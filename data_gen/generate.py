"""Generation of a dataset: config -> objects -> shards (one independent task per shard).

Seeds derive from (base seed, shard index, sample index) for the per-sample draws
and from (base seed, shard index, frame index) for the originals, so a shard's
bytes depend only on the generation config and its index, never on the number of
workers or which shards run together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from data_gen import __version__
from data_gen.backend import BACKENDS
from data_gen.cfa import PLANE_COLOUR
from data_gen.chain import stored_names
from data_gen.components import V1, Chain
from data_gen.config import GenerationSettings, generation_settings
from data_gen.core.cli import die_with_parent
from data_gen.core.errors import InputError, require
from data_gen.core.paths import open_to_umask
from data_gen.noise_kinds import unhashed_keys
from data_gen.optics import PSFBank, build_bank
from data_gen.render import draw_sample
from data_gen.render_chain import NORMALS, SampleRenderer
from data_gen.sensor import SensorModel, build_sensor
from data_gen.shards import (
    MANIFEST,
    RECORDS,
    SCALE,
    ShardWriter,
    StorageSpec,
    build_manifest,
    meta_dtype,
    read_mapping,
    remove_stale_tmp,
    remove_stale_tmp_files,
    shard_complete,
    shard_name,
    write_json_atomic,
    write_record,
)
from data_gen.sources import Source, build_source

log = logging.getLogger(__name__)

# Settings that count (hash, stored config) only away from this value, so that datasets
# made before they existed keep their hash; a stored config may lack them. A mapping holds
# the settings of a group.
DEFAULT_ONLY_SETTINGS = {"psf_per": "patch", "exposure": {"at_max": 0.0}}

# Keys that change how a run executes but never what it writes.
RUNTIME_KEYS = (
    "out_dir",
    "shard_index",
    "workers",
    "fft_threads",
    "progress",
    "write",
    "bank_cache",
    "manifest_only",
)
_FRAME_STREAM = 1  # domain tag separating frame seeds from sample seeds
RENDER_VERSION = 2  # schema v2 shards: 1 = per sample (until 2026-12), 2 = the batched chain


def generation_config(cfg: dict, settings: GenerationSettings | None = None) -> dict:
    """The part of a resolved config that determines the data (runtime keys removed).

    ``renderer`` and ``device`` count only for the torch renderer (its FFT rounds otherwise
    than scipy's, and differently per device), and ``normals`` only when it is ``device``,
    so datasets made before these keys existed keep their hash. Likewise ``sensor.noise``
    counts only when it is not ``poisson_gaussian``, the :data:`DEFAULT_ONLY_SETTINGS`
    (``psf_per``, ``exposure.at_max``) only away from their default, and the noise kinds'
    own sensor keys (``sensor.physical``, ``sensor.dark``, ...) only for the kind chosen.
    ``settings``: ``cfg`` already checked (:func:`data_gen.config.generation_settings`)."""
    s = generation_settings(cfg) if settings is None else settings
    drop = set(RUNTIME_KEYS) | {"hydra", "component"}
    if s.sensor:  # the noise kinds' keys count only for the kind chosen
        unhashed = unhashed_keys(s.sensor)
        cfg = {**cfg, "sensor": {k: v for k, v in s.sensor.items() if k not in unhashed}}
    v1 = s.components is None or s.components == list(V1)
    if v1:
        drop.add("components")  # the two components of schema v1
    for key, default in DEFAULT_ONLY_SETTINGS.items():  # psf_per = patch, exposure.at_max = 0
        if not isinstance(default, dict):
            if cfg.get(key) == default:
                drop.add(key)
        elif isinstance(cfg.get(key), dict):
            kept = {k: v for k, v in cfg[key].items() if k not in default or default[k] != v}
            cfg = {**cfg, key: kept}
    if BACKENDS[s.renderer].reference:
        drop |= {"renderer", "device", "normals"}
    elif not NORMALS[s.normals].on_device:
        drop.add("normals")
    out = {k: v for k, v in cfg.items() if k not in drop}
    settings = s.component or {}
    active = {c: settings.get(c) for c in s.components if c not in V1} if not v1 else {}
    if "components" in out and active:  # only the settings of the components rendered count
        out["component"] = active
    if not v1:  # the batched chain renders schema v2 (its float rounding differs from the
        out["render_version"] = RENDER_VERSION  # per-sample renderer of the first v2 shards)
    return out


def config_hash(gen_cfg: dict) -> str:
    blob = json.dumps(gen_cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_shard_index(spec, total: int) -> list[int]:
    """``None`` (all), an int, a list, ``'a:b'`` or ``'range(a,b)'`` -> sorted shard indices."""
    if spec is None:
        idx = list(range(total))
    elif isinstance(spec, bool):
        raise InputError(f"shard_index = {spec!r}: give an index, a list or range(a,b)")
    elif isinstance(spec, int):
        idx = [spec]
    elif isinstance(spec, (list, tuple)):
        idx = [int(i) for i in spec]
    elif isinstance(spec, str):
        m = re.fullmatch(
            r"\s*(?:range\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)|(-?\d+)\s*:\s*(-?\d+))\s*", spec
        )
        if m is None:
            if spec.strip().lstrip("-").isdigit():
                idx = [int(spec)]
            else:
                raise InputError(
                    f"shard_index = {spec!r}: give an index, a list, a:b or range(a,b)"
                )
        else:
            a, b = (int(g) for g in (m.group(1, 2) if m.group(1) is not None else m.group(3, 4)))
            require(b > a, f"shard_index = {spec!r} is empty")
            idx = list(range(a, b))
    else:
        raise InputError(f"shard_index = {spec!r}: give an index, a list or range(a,b)")
    for i in idx:
        require(0 <= i < total, f"shard_index {i} is outside 0..{total - 1} (shards = {total})")
    return sorted(set(idx))


@dataclass
class Pipeline:
    """Everything built from a generation config, validated."""

    cfg: dict
    settings: GenerationSettings
    hash: str
    source: Source
    sensor: SensorModel
    bank: PSFBank
    storage: StorageSpec
    chain: Chain

    @property
    def components(self) -> tuple[str, ...]:
        return self.chain.names

    @property
    def schema(self) -> int:
        return self.chain.schema

    @property
    def margin(self) -> int:
        """Frame pixels a patch needs on every side (the blurs' support)."""
        return self.chain.margin(self.bank.size)

    @property
    def min_frame(self) -> int:
        return self.settings.patch_size + 2 * self.margin

    @property
    def patch_names(self) -> list[str]:
        return stored_names(self.components)

    @property
    def meta_dtype(self) -> np.dtype:
        # component parameters per colour channel (an airlight has 3 even on a Bayer sensor)
        extra = self.chain.meta_fields(self.settings.channels) if self.schema == 2 else []
        extra = extra + self.sensor.noise.meta_fields(self.stored_channels)  # per stored channel
        return meta_dtype(self.stored_channels, extra or None)

    @property
    def extra_meta(self) -> bool:
        """Whether ``meta`` holds fields beyond schema v1's (components' or the noise kind's)."""
        return self.schema == 2 or not self.sensor.noise.default

    @property
    def cfa(self) -> str | None:
        """Bayer pattern when the shards hold packed mosaics, else None."""
        return self.settings.cfa if self.settings.layout == "rggb" else None

    @property
    def stored_channels(self) -> int:
        return 4 if self.cfa else self.settings.channels

    @property
    def stored_patch(self) -> int:
        p = self.settings.patch_size
        return p // 2 if self.cfa else p

    @property
    def channel_colour(self) -> list[int]:
        """Colour channel (of the source / sensor model) behind each stored channel."""
        return list(PLANE_COLOUR) if self.cfa else list(range(self.settings.channels))


def build_pipeline(cfg: dict) -> Pipeline:
    """Validate a resolved config and build the pipeline; raises :class:`InputError`."""
    s = generation_settings(cfg)
    gen = generation_config(cfg, s)
    st = s.storage
    storage = StorageSpec(st.dtype, st.compression, st.compression_opts, st.chunk_samples)
    BACKENDS[s.renderer].check_device(s.device)
    chain = Chain.build(V1 if s.components is None else s.components, s.component)
    source = build_source(s.source, s.channels)
    needs = chain.needs_depth
    if needs and (why := source.lacks_depth()) is not None:
        raise InputError(f"component {needs[0]} needs a depth map: {why}")
    sensor = build_sensor(s.sensor, s.channels)
    bank = build_bank(s.lens, s.channels, s.bank_cache, s.progress)
    return Pipeline(cfg, s, config_hash(gen), source, sensor, bank, storage, chain)


def _renderer(pipe: Pipeline, threads: int):
    """``(render(specs) -> (patches, records), context)`` for the config's ``renderer``;
    ``records``: each sample's component and noise-kind parameters for ``meta`` (schema v2
    or a noise kind other than the default), else None."""
    render = SampleRenderer.for_pipeline(pipe, threads=threads)
    extra = pipe.extra_meta

    def run(specs):
        patches, records = render(specs)
        return patches, records if extra else None

    return run, BACKENDS[pipe.settings.renderer].batch_threads(threads)


def sample_seed(seed: int, shard: int, index: int, stream: int = 0) -> int:
    """64-bit seed of sample (or frame) ``index`` of ``shard``."""
    ss = np.random.SeedSequence([seed, shard, stream, index])
    return int(ss.generate_state(1, np.uint64)[0])


def sample_meta(pipe: Pipeline, specs: list, records: list[dict] | None = None) -> np.ndarray:
    """The per-sample ``meta`` records (:func:`data_gen.shards.meta_dtype`) of ``specs``;
    ``records``: each sample's component and noise-kind parameters (:attr:`Pipeline.extra_meta`)."""
    colour = pipe.channel_colour
    meta = np.zeros(len(specs), meta_dtype(pipe.stored_channels))
    for j, s in enumerate(specs):
        state = pipe.bank.state_of(s.psf_index)
        meta[j] = (
            s.frame.name,
            s.y,
            s.x,
            state.zoom,
            state.f_number,
            state.focus,
            s.image_height,
            s.azimuth,
            s.psf_index,
            s.noise.iso,
            s.noise.k0[colour],
            s.noise.k1[colour],
            s.noise.ob,
            s.noise.white,
            s.exposure,
            s.seed,
        )
    if records is None:
        return meta
    full = np.zeros(len(specs), pipe.meta_dtype)
    for name in meta.dtype.names:
        full[name] = meta[name]
    for j, rec in enumerate(records):
        for k, v in rec.items():
            full[k][j] = v
    return full


def iter_shard(pipe: Pipeline, shard: int, threads: int = 1):
    """Yield ``(patches, meta)`` batches of shard ``shard`` in sample order."""
    c = pipe.settings
    p, m, per_frame = c.patch_size, c.samples_per_shard, c.patches_per_source
    exposure = c.exposure.law
    render, threads_ctx = _renderer(pipe, threads)
    support = pipe.min_frame - p + 1  # odd: the crop keeps support // 2 frame pixels around
    frame, frame_id = None, -1
    for start in range(0, m, c.batch_size):
        specs = []
        for i in range(start, min(m, start + c.batch_size)):
            if i // per_frame != frame_id:
                frame_id = i // per_frame
                rng = np.random.default_rng(sample_seed(c.seed, shard, frame_id, _FRAME_STREAM))
                frame = pipe.source.frame(rng)
            specs.append(
                draw_sample(
                    frame,
                    sample_seed(c.seed, shard, i),
                    p,
                    support,
                    exposure,
                    pipe.sensor,
                    pipe.bank,
                )
            )
        with threads_ctx:
            patches, records = render(specs)
        yield patches, sample_meta(pipe, specs, records)


def shard_attrs(pipe: Pipeline, shard: int) -> dict:
    return {
        "schema_version": pipe.schema,
        **(
            {"components": list(pipe.components), "margin": pipe.margin} if pipe.schema == 2 else {}
        ),
        "layout": pipe.settings.layout,
        "scale": SCALE,
        "channels": pipe.stored_channels,
        **({"cfa": pipe.cfa} if pipe.cfa else {}),
        "config": yaml.safe_dump(generation_config(pipe.cfg), sort_keys=True),
        "config_hash": pipe.hash,
        "package_version": __version__,
        "shard_index": shard,
        "num_shards": pipe.settings.shards,
        "psf_name": pipe.bank.name,
    }


def make_shard(
    pipe: Pipeline, out_dir: Path, shard: int, threads: int = 1, write: bool = True, progress=None
) -> dict | None:
    """Render shard ``shard`` and (when ``write``) store it; returns its record."""
    name = shard_name(shard, pipe.settings.shards)
    writer = None
    if write:
        remove_stale_tmp(out_dir, name)
        writer = ShardWriter(
            out_dir / name,
            pipe.settings.samples_per_shard,
            pipe.stored_channels,
            pipe.stored_patch,
            pipe.storage,
            shard_attrs(pipe, shard),
            {"psfs": pipe.bank.psfs},
            pipe.patch_names,
            pipe.meta_dtype,
        )
    try:
        for patches, meta in iter_shard(pipe, shard, threads):
            if writer is not None:
                writer.write(patches, meta)
            if progress is not None:
                progress(len(meta))
        if writer is None:
            return None
        writer.commit()
        writer = None
    finally:
        if writer is not None:
            writer.abort()
    return write_record(out_dir, name, shard, pipe.settings.samples_per_shard, pipe.hash)


# ---- process pool -------------------------------------------------------------------
_worker_pipe: Pipeline | None = None
_worker_queue = None


def _init_worker(cfg: dict, queue) -> None:
    global _worker_pipe, _worker_queue
    die_with_parent()
    logging.basicConfig(level=logging.WARNING)
    _worker_pipe, _worker_queue = build_pipeline(cfg), queue


def _worker_task(args: tuple) -> dict | None:
    out_dir, shard, threads, write = args
    assert _worker_pipe is not None
    return make_shard(_worker_pipe, Path(out_dir), shard, threads, write, _worker_queue.put)


def _differs(old, pipe: Pipeline) -> list[str]:
    new = generation_config(pipe.cfg)
    old = old if isinstance(old, dict) else {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def claim_out_dir(out_dir: Path, pipe: Pipeline) -> bool:
    """Make ``out_dir`` this config's dataset, or refuse one made with another config;
    True when this call made the claim (wrote ``config.yaml``).

    The claim is one atomic step: ``config.yaml`` is written to a temporary file and
    hard-linked to its name, which fails if the name exists (create-exclusive). Of several
    generators started together, exactly one creates it; every other one reads the
    complete file and proceeds only if its config is the same.
    """
    created = False
    require(not out_dir.is_file(), f"out_dir = {str(out_dir)!r} is a file, not a directory")
    saved = out_dir / "config.yaml"
    if not saved.exists() and out_dir.exists() and any(out_dir.glob("shard-*.h5")):
        raise InputError(
            f"out_dir = {str(out_dir)!r} holds shards but no config.yaml; refusing to mix datasets"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if not saved.exists():
        fd, name = tempfile.mkstemp(prefix=f"config.yaml.tmp-{socket.gethostname()}-", dir=out_dir)
        tmp = Path(name)
        with os.fdopen(fd, "w") as f:
            f.write(yaml.safe_dump(generation_config(pipe.cfg), sort_keys=True))
        open_to_umask(tmp)  # mkstemp makes it private
        try:
            os.link(tmp, saved)  # atomic, and refuses an existing name
            created = True
        except FileExistsError:
            pass  # another generator claimed it first: compare below
        except OSError:  # a file system without hard links: exclusive create instead
            with contextlib.suppress(FileExistsError), open(saved, "x") as f:
                f.write(tmp.read_text())
                created = True
        finally:
            tmp.unlink(missing_ok=True)
    old = read_mapping(saved, "dataset config")
    if config_hash(old) != pipe.hash:
        raise InputError(
            f"out_dir = {str(out_dir)!r} holds a dataset made with another config "
            f"(differs in: {', '.join(_differs(old, pipe))}); nothing was changed there. Use "
            "another out_dir, or delete that one to regenerate."
        )
    return created


def release_claim(out_dir: Path, made_dir: bool) -> None:
    """Undo a claim this run made when it failed before any shard was written (nor begun
    by another generator): ``config.yaml``, an empty ``records/``, and ``out_dir`` when the
    run made it. The corrected command then claims ``out_dir`` afresh instead of being
    refused as another config."""
    if any(out_dir.glob("shard-*")) or any((out_dir / RECORDS).glob("*")):
        return
    (out_dir / "config.yaml").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (out_dir / RECORDS).rmdir()
    if made_dir:
        with contextlib.suppress(OSError):
            out_dir.rmdir()


def generate(cfg: dict) -> dict:
    """Generate (or finish) the dataset described by the resolved config ``cfg``.

    Returns a summary: shards written / skipped, samples, seconds, quadruples/s, and
    whether the manifest was written. Raises :class:`InputError` on bad input before
    anything is written.
    """
    pipe = build_pipeline(cfg)
    s = pipe.settings
    require(
        s.psf_per == "patch",
        f"psf_per = {s.psf_per}: patches with a PSF per block are rendered for on-the-fly "
        "training only (a shard stores one psf_index per patch); use psf_per=patch",
    )
    total = s.shards
    indices = parse_shard_index(s.shard_index, total)
    require(s.out_dir is not None, "out_dir is missing: give out_dir=DIR")
    out_dir = Path(s.out_dir)
    if s.manifest_only:
        # the finishing step of a job array: every shard must be complete already. Sizes
        # and records only: the manifest job's `data_gen.verify` hashes every shard next.
        missing = [
            i
            for i in range(total)
            if not shard_complete(out_dir, shard_name(i, total), pipe.hash, checksum=False)
        ]
        require(
            not missing,
            f"manifest_only: {len(missing)} of {total} shards in {out_dir} are missing or "
            f"incomplete (indices {missing[:20]}{' ...' if len(missing) > 20 else ''}); "
            "re-run those array tasks",
        )
        indices = []
    else:  # only rendering needs the originals checked
        pipe.source.validate(pipe.min_frame, s.progress)
    if s.write:
        made_dir = not out_dir.exists()
        if claim_out_dir(out_dir, pipe):
            try:
                return _generate(pipe, out_dir, indices)
            except BaseException:
                release_claim(out_dir, made_dir)
                raise
    return _generate(pipe, out_dir, indices)


def _generate(pipe: Pipeline, out_dir: Path, indices: list[int]) -> dict:
    """Render and write the shards of ``indices`` not complete yet into the claimed
    ``out_dir`` (or render only, ``write=false``); the manifest when all are done."""
    s = pipe.settings
    total, write = s.shards, s.write
    todo = indices
    if write:
        stale = remove_stale_tmp_files(out_dir)
        if stale:
            log.info("removed %d temporary file(s) left by an earlier run: %s", len(stale), stale)
        todo = [i for i in indices if not shard_complete(out_dir, shard_name(i, total), pipe.hash)]
        if len(todo) < len(indices):
            log.info(
                "%d of %d shards already complete, skipped", len(indices) - len(todo), len(indices)
            )
    samples = len(todo) * s.samples_per_shard
    t0 = time.perf_counter()
    _run(pipe, out_dir, todo, samples)
    seconds = time.perf_counter() - t0
    manifest_written = False
    if write:
        header = {
            "schema_version": pipe.schema,
            **({"components": list(pipe.components)} if pipe.schema == 2 else {}),
            "config_hash": pipe.hash,
            "samples_per_shard": s.samples_per_shard,
            "patch_size": pipe.stored_patch,
            "channels": pipe.stored_channels,
            "layout": s.layout,
            **({"cfa": pipe.cfa} if pipe.cfa else {}),
            "dtype": pipe.storage.dtype,
            "scale": SCALE,
            "package_version": __version__,
        }
        manifest = build_manifest(out_dir, total, header)
        if manifest is not None:
            write_json_atomic(out_dir / MANIFEST, manifest)
            manifest_written = True
    return {
        "out_dir": str(out_dir),
        "shards_written": len(todo) if write else 0,
        "shards_skipped": len(indices) - len(todo),
        "samples": samples,
        "seconds": seconds,
        "quadruples_per_s": samples / seconds if seconds > 0 and samples else math.nan,
        "manifest": manifest_written,
    }


def _run(pipe: Pipeline, out_dir: Path, todo: list[int], samples: int) -> None:
    from tqdm import tqdm

    s = pipe.settings
    workers, threads, write = s.workers, s.threads, s.write
    bar = tqdm(
        total=samples,
        unit="quad",
        desc="generating",
        disable=not s.progress,
        smoothing=0.1,
        dynamic_ncols=True,
    )
    try:
        if workers == 1 or len(todo) <= 1:
            for i in todo:
                make_shard(pipe, out_dir, i, threads, write, bar.update)
            return
        ctx = mp.get_context("spawn")  # no inherited HDF5 handles or thread pools
        queue = ctx.Queue()

        def pump() -> None:  # worker progress -> bar; None ends it
            while (n := queue.get()) is not None:
                bar.update(n)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            with ctx.Pool(min(workers, len(todo)), _init_worker, (pipe.cfg, queue)) as pool:
                for _ in pool.imap_unordered(
                    _worker_task, [(str(out_dir), i, threads, write) for i in todo]
                ):
                    pass
        finally:
            queue.put(None)
            t.join(timeout=5)
    finally:
        bar.close()
