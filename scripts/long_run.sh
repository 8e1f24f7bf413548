#!/usr/bin/env bash
# The long run (issue "Quality that holds on photographs nobody tuned on", §3), one command;
# rerun it to resume: every stage that is done is skipped, training resumes (ckpt_path=auto).
#
#   scripts/long_run.sh                      # CPU, in the background across sessions
#   TRAIN_ARGS="trainer=gpu" scripts/long_run.sh   # on a GPU (add e.g. model.width=64 or
#                                                   # data.crop=128 only if validation says so)
#
# 1. validation shards of the 40 held-out BSD400 photographs (dataset=shipped_v2_val);
# 2. training, conf/experiment/long.yaml: batches rendered on the fly from the other 360 (+
#    dead leaves), validated every 2,048 steps, best checkpoint kept by validation, early
#    stopping when validation stops improving;
# 3. the learning curve (RUN/learning_curve.csv, .png);
# 4. export of the best checkpoint by validation;
# 5. evaluate it and the current `default` on the validation photographs (images=bsd400_val)
#    and compare them (scripts/compare_validation.py);
# 6. only if it wins there: publish it as a new `default` version (the registry keeps the
#    old ones), then evaluate it ONCE on the test sets (Kodak24, McMaster18, CBSD68) for the
#    report. Nothing here chooses anything with a test set.
# Environment: DIR (default runs/long), PY (python), VERSION (date), TRAIN_ARGS, NICE (10),
# REGISTRY (residual_train/weights), ISOS ([100,400,1600,6400]), WORKERS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DIR=${DIR:-runs/long}
VERSION=${VERSION:-$(date +%Y%m%d)}
REGISTRY=${REGISTRY:-residual_train/weights}
ISOS=${ISOS:-[100,400,1600,6400]}
WORKERS=${WORKERS:-2}
run() { nice -n "${NICE:-10}" "$PY" "$@"; }

run -m data_gen dataset=shipped_v2_val out_dir="$DIR/val" progress=false
# shellcheck disable=SC2086
run -m residual_train experiment=long data.dir="$DIR/val" run_dir="$DIR/train" ckpt_path=auto ${TRAIN_ARGS:-}
run scripts/learning_curve.py "$DIR/train"
best=$(run -c "import json,sys; print(json.load(open(sys.argv[1]))['best'])" "$DIR/train/result.json")
[ -f "$DIR/export/card.json" ] || run -m residual_train.release.export ckpt="$best" out_dir="$DIR/export"
for m in candidate current; do
  ref=$([ $m = candidate ] && echo "$DIR/export" || echo default)
  [ -f "$DIR/eval_val_$m/metrics.json" ] || run -m residual_train.evaluate model="$ref" \
      images=bsd400_val "isos=$ISOS" out="$DIR/eval_val_$m" workers="$WORKERS" progress=false
done
if ! run scripts/compare_validation.py "$DIR/eval_val_candidate/metrics.json" \
    "$DIR/eval_val_current/metrics.json"; then
  echo "not published: the candidate does not beat the current default on validation" >&2
  exit 1
fi
[ -d "$REGISTRY/default/$VERSION" ] || run -m residual_train.release.publish src="$DIR/export" \
    registry="$REGISTRY" name=default version="$VERSION"
[ -f "$DIR/eval_test/metrics.json" ] || run -m residual_train.evaluate model="$DIR/export" \
    'images=[kodak24,mcmaster18,cbsd68]' "isos=$ISOS" out="$DIR/eval_test" workers="$WORKERS" \
    progress=false
echo "published default/$VERSION; test-set report: $DIR/eval_test/index.html"
