#!/usr/bin/env bash
# One short ablation run, judged on validation only (docs/design.md §8, "Protocol"):
#   scripts/ablate.sh NAME [training overrides...]
# trains the shipped recipe (conf/experiment/shipped.yaml) for a short schedule with
# batches rendered on the fly from the training photographs (BSD400 without its validation
# split, + dead leaves), validating on shards of the held-out photographs ($VAL_DATA),
# exports the last checkpoint and evaluates it on the validation photographs
# (images=bsd400_val). Never on Kodak24 / McMaster18 / CBSD68.
# Environment: VAL_DATA (validation shards; make them with the command in
# docs/ablations.md), STEPS (default 1000), OUT (default runs/abl), ISOS, MAX_SIZE, PY.
set -euo pipefail
name=$1; shift
PY=${PY:-python}
OUT=${OUT:-runs/abl}
STEPS=${STEPS:-1000}
ISOS=${ISOS:-[100,1600,6400]}
VAL_DATA=${VAL_DATA:?give the validation shards as VAL_DATA=DIR}
run=$OUT/$name
nice -n 10 $PY -m residual_train experiment=shipped run_dir=$run/train ckpt_path=auto \
    data.dir=$VAL_DATA data.val_shards=all data.onthefly.enabled=true \
    'data.onthefly.generator={source:{sources:{photos:{include:null,exclude:[bsd400_val]}}}}' \
    trainer.max_steps=$STEPS optim.lr=1e-3 optim.warmup_steps=$((STEPS / 10)) \
    trainer.val_check_interval=$((STEPS < 1000 ? STEPS : 1000)) "$@"
[ -d $run/export ] || nice -n 10 $PY -m residual_train.release.export \
    ckpt=$run/train/checkpoints/last.ckpt out_dir=$run/export
[ -f $run/eval/metrics.json ] || nice -n 10 $PY -m residual_train.evaluate \
    model=$run/export images=bsd400_val "isos=$ISOS" out=$run/eval progress=false \
    ${MAX_SIZE:+max_size=$MAX_SIZE}
$PY scripts/ablation_row.py $run/eval/metrics.json
