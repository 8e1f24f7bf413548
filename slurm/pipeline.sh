#!/bin/bash
# The whole chain as dependent Slurm jobs: datagen array -> manifest -> train ->
# export + publish. Each stage starts only if the previous one succeeded (afterok);
# when one fails the later ones are cancelled (--kill-on-invalid-dep), never left pending.
#
#   DATA_DIR=/shared/ds SHARDS=64 RUN_DIR=/shared/runs/exp1 REGISTRY=/shared/registry \
#   PARTITION=gpu ACCOUNT=proj NODES=2 GPUS_PER_NODE=4 CPUS_PER_TASK=8 TIME_TRAIN=24:00:00 \
#   DATA_OVERRIDES="lens=sharp_prime samples_per_shard=4096" \
#   TRAIN_OVERRIDES="experiment=default" WAIT=1 slurm/pipeline.sh
#
# Variables (all optional except the paths): PARTITION, ACCOUNT, QOS, TIME_DATA,
# TIME_TRAIN, TIME_EXPORT, NODES (1), GPUS_PER_NODE (0 = CPU: gloo, one task per
# CPU_TASKS), CPU_TASKS (1), CPUS_PER_TASK (4), SHARDS_PER_TASK, MAX_PARALLEL, NAME,
# VERSION, ALIAS. SHARDS=0 skips data generation (DATA_DIR must hold a dataset).
# WAIT=1: wait for the chain, print each job's state and exit non-zero naming the
# stage that failed and the error lines of its log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export RT_ROOT=${RT_ROOT:-$(dirname "$here")}
cd "$RT_ROOT"
: "${DATA_DIR:?set DATA_DIR}" "${RUN_DIR:?set RUN_DIR}" "${REGISTRY:?set REGISTRY}"
export DATA_DIR RUN_DIR REGISTRY SHARDS=${SHARDS:-0}
export NAME=${NAME:-residual} VERSION=${VERSION:-$(basename "$RUN_DIR")} ALIAS=${ALIAS:-}
LOGS=${LOGS:-$RUN_DIR.slurm-logs}
mkdir -p "$LOGS"

common=()
[[ -n ${PARTITION:-} ]] && common+=(--partition="$PARTITION")
[[ -n ${ACCOUNT:-} ]] && common+=(--account="$ACCOUNT")
[[ -n ${QOS:-} ]] && common+=(--qos="$QOS")
read -r -a data_ov <<<"${DATA_OVERRIDES:-}"
read -r -a train_ov <<<"${TRAIN_OVERRIDES:-}"

submit() {  # submit NAME sbatch-args... ; prints the job id
  local id
  id=$(sbatch --parsable "${common[@]}" "$@")
  echo "${id%%;*}"
}

jobs=()
dep=()
if ((SHARDS > 0)); then
  block=${SHARDS_PER_TASK:-1}
  tasks=$(((SHARDS + block - 1) / block))
  data=$(submit --time="${TIME_DATA:-02:00:00}" --output="$LOGS/datagen-%A_%a.out" \
    --array="0-$((tasks - 1))${MAX_PARALLEL:+%$MAX_PARALLEL}" "$here/datagen.sbatch" "${data_ov[@]}")
  manifest=$(submit --time="${TIME_DATA:-02:00:00}" --output="$LOGS/manifest-%j.out" \
    --dependency="afterok:$data" --kill-on-invalid-dep=yes \
    "$here/datagen_manifest.sbatch" "${data_ov[@]}")
  jobs+=("datagen:$data" "manifest:$manifest")
  dep=(--dependency="afterok:$manifest" --kill-on-invalid-dep=yes)
fi
gpus=${GPUS_PER_NODE:-0}
if ((gpus > 0)); then
  res=(--ntasks-per-node="$gpus" --gpus-per-node="$gpus")
  accel=gpu
else
  res=(--ntasks-per-node="${CPU_TASKS:-1}")
  accel=cpu
fi
export ACCELERATOR=$accel
train=$(submit "${dep[@]}" --nodes="${NODES:-1}" "${res[@]}" \
  --cpus-per-task="${CPUS_PER_TASK:-4}" --time="${TIME_TRAIN:-24:00:00}" \
  --output="$LOGS/train-%j.out" "$here/train.sbatch" data.dir="$DATA_DIR" "${train_ov[@]}")
jobs+=("train:$train")
export_job=$(submit --dependency="afterok:$train" --kill-on-invalid-dep=yes \
  --time="${TIME_EXPORT:-00:30:00}" --output="$LOGS/export-%j.out" "$here/export_publish.sbatch")
jobs+=("export_publish:$export_job")
echo "submitted: ${jobs[*]} (logs in $LOGS)"
[[ ${WAIT:-0} == 1 ]] || exit 0

# ---- wait for every job to end, then report ------------------------------------------
ids=$(printf '%s\n' "${jobs[@]}" | cut -d: -f2 | paste -sd,)
terminal='^(COMPLETED|FAILED|CANCELLED.*|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE)$'
while :; do
  # a job is done when it and (for arrays) all its tasks have a terminal state in sacct
  states=$(sacct -n -X -P -j "$ids" -o JobID,State 2>/dev/null || true)
  pending=$(squeue -h -j "$ids" 2>/dev/null | wc -l || echo 1)
  if [[ -n $states && $pending -eq 0 ]] &&
    ! awk -F'|' -v re="$terminal" '{split($2, s, " "); if (s[1] !~ re) bad=1} END {exit !bad}' <<<"$states"; then
    break
  fi
  sleep "${POLL:-3}"
done
status=0
for j in "${jobs[@]}"; do
  stage=${j%%:*} id=${j#*:}
  st=$(sacct -n -X -P -j "$id" -o State,ExitCode | awk -F'|' '{split($1, s, " "); print s[1] " " $2}' | sort -u | paste -sd,)
  echo "$stage job $id: $st"
  if [[ $st != "COMPLETED 0:0" ]] && ((status == 0)); then
    status=1
    if [[ $st == CANCELLED* ]]; then
      echo "error: stage $stage (job $id) was cancelled: an earlier stage failed or it was scancel'ed" >&2
    else
      echo "error: stage $stage (job $id) failed: $st" >&2
      grep -h -E '^(error|Error|FAIL|Traceback)|Error:' "$LOGS"/*"$id"*.out 2>/dev/null | head -5 | sed 's/^/  /' >&2 || true
    fi
  fi
done
exit $status
