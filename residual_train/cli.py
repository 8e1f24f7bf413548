"""``residual-train STAGE [key=value ...]``: one command for every stage of the pipeline.

Each stage is the module ``python -m`` runs (the two spellings are the same program):

========== ===================================== =========================================
stage      module                                does
========== ===================================== =========================================
generate   data_gen                              render paired training data (HDF5 shards)
verify     data_gen.verify                       check a dataset against its manifest
preview    data_gen.preview                      contact sheet of a dataset
optics     data_gen.optics                       precompute / draw a PSF bank
calibrate  data_gen.calibrate                    ``noise`` / ``lens``: your camera, measured
train      residual_train                        train (Lightning; Hydra overrides)
export     residual_train.release.export                 checkpoint -> ONNX + safetensors + card
publish    residual_train.release.publish                copy an export into a registry
deploy     residual_train.deploy                 correct an image, save the residual maps
recompose  residual_train.deploy.recompose       compose saved maps at new strengths
evaluate   residual_train.evaluate               quality on real photographs vs classical
serve      residual_train.serve                  HTTP service: upload once, render at strengths
fetch      residual_train.release.fetch                  a device downloads a published model, verified
demo       residual_train.pipelines.demo         the main job, end to end, with a report
========== ===================================== =========================================
"""

from __future__ import annotations

import runpy
import sys

STAGES = {
    "generate": "data_gen",
    "verify": "data_gen.verify",
    "preview": "data_gen.preview",
    "optics": "data_gen.optics",
    "calibrate": "data_gen.calibrate",  # two words: calibrate noise|lens
    "train": "residual_train",
    "export": "residual_train.release.export",
    "publish": "residual_train.release.publish",
    "deploy": "residual_train.deploy",
    "recompose": "residual_train.deploy.recompose",
    "evaluate": "residual_train.evaluate",
    "serve": "residual_train.serve",
    "fetch": "residual_train.release.fetch",
    "demo": "residual_train.pipelines.demo",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(
            f"error: unknown stage {stage!r}; stages: {', '.join(STAGES)} (residual-train --help)",
            file=sys.stderr,
        )
        return 2
    sys.argv = [f"residual-train {stage}", *rest]
    try:
        runpy.run_module(STAGES[stage], run_name="__main__", alter_sys=True)
    except SystemExit as e:  # the stage's own exit status
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
