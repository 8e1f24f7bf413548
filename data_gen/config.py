"""The generator's top-level settings (``conf/data_gen.yaml``), typed once at the entry point.

:func:`generation_settings` checks a resolved config as :class:`GenerationSettings`; the
defaults of the keys a config may lack (a dataset's saved ``config.yaml`` holds no runtime
keys, and ones written before ``renderer`` existed hold no renderer keys) live here and
nowhere else. The groups ``source``, ``sensor``, ``lens`` and ``component`` are checked by
their own builders. The config *dict* stays what is hashed (:func:`data_gen.generate.
generation_config`): this model only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict, model_validator

from data_gen.backend import BACKENDS
from data_gen.cfa import PATTERNS
from data_gen.core.typed import Count, NullIsEmpty, Number, Settings, at_least, check, parse
from data_gen.render_chain import NORMALS

Group = Annotated[dict, NullIsEmpty]
"""A config group (null: empty), checked by its own builder."""


class Exposure(Settings):
    min: Number
    max: Number
    at_max: Number = 0.0  # stored configs made before the key existed lack it

    @model_validator(mode="after")
    def _ordered(self):
        check(0 < self.min <= self.max, "need 0 < exposure.min <= exposure.max")
        check(0 <= self.at_max <= 1, f"exposure.at_max = {self.at_max}: a share in [0, 1]")
        return self

    @property
    def law(self) -> tuple[float, float, float]:
        """``(min, max, at_max)``: what :func:`data_gen.render.draw_exposure` takes."""
        return float(self.min), float(self.max), float(self.at_max)


class Storage(Settings):
    dtype: Literal["float32", "float16"]
    compression: Literal[None, "gzip", "lzf"] = None
    compression_opts: Any = None  # gzip level
    chunk_samples: Count = 1


class GenerationSettings(Settings):
    """``conf/data_gen.yaml``: unknown top-level keys are left alone (they are hashed as
    they are); the groups are read as mappings."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    shards: Count
    samples_per_shard: Count
    patch_size: Count
    patches_per_source: Count
    batch_size: Count
    channels: Count
    seed: Annotated[int, Strict(), at_least(0)]
    layout: Literal["rgb", "rggb"]
    cfa: Literal[(*PATTERNS, None)] = None  # type: ignore[valid-type]  # layout = rggb
    exposure: Exposure
    storage: Storage
    components: list[str] | None = None  # None: schema v1's blur, noise
    component: Any = None  # each component's settings (checked by the chain)
    source: Group = Field(default_factory=dict)
    sensor: Group = Field(default_factory=dict)
    lens: Group = Field(default_factory=dict)
    renderer: Literal[tuple(BACKENDS)] = "numpy"  # type: ignore[valid-type]
    device: Any = "cpu"  # renderer = torch: checked by the backend
    normals: Literal[tuple(NORMALS)] = "host"  # type: ignore[valid-type]
    psf_per: Literal["patch", "block"] = "patch"  # block: on-the-fly training only (for now)
    # runtime keys: how a run executes, never what it writes
    out_dir: str | None = None
    shard_index: Any = None  # checked by data_gen.generate.parse_shard_index
    workers: Count = 1
    fft_threads: Annotated[int, Strict(), at_least(0)] | None = None  # null or 0: 1
    progress: Annotated[bool, Strict()] = False
    write: Annotated[bool, Strict()] = True
    bank_cache: str | None = None
    manifest_only: Annotated[bool, Strict()] = False

    @model_validator(mode="after")
    def _consistent(self):
        if self.layout == "rggb":
            check(
                self.cfa is not None,
                f"cfa = {self.cfa!r}: use one of {', '.join(PATTERNS)} (layout = rggb)",
            )
            check(
                self.channels == 3,
                f"channels = {self.channels}: layout = rggb mosaics 3 colour channels",
            )
            check(
                self.patch_size % 2 == 0,
                f"patch_size = {self.patch_size}: must be even for layout = rggb (2x2 Bayer blocks)",
            )
        check(
            not NORMALS[self.normals].on_device or not BACKENDS[self.renderer].reference,
            f"normals = {self.normals}: only with renderer = torch (the numpy renderer is the "
            "reference)",
        )
        return self

    @property
    def threads(self) -> int:
        """FFT threads per process (null: 1)."""
        return self.fft_threads or 1


def generation_settings(cfg: Mapping) -> GenerationSettings:
    """``cfg`` checked as :class:`GenerationSettings`; the first problem as one line."""
    return parse(GenerationSettings, cfg, "")
