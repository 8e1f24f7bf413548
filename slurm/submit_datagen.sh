#!/bin/bash
# Submit a datagen job array and its manifest job (afterok); prints both job ids.
#   DATA_DIR=/shared/ds SHARDS=64 [SHARDS_PER_TASK=4] [MAX_PARALLEL=16] \
#     slurm/submit_datagen.sh [sbatch options --] [generator overrides]
# e.g. SBATCH_PARTITION=cpu SBATCH_ACCOUNT=proj slurm/submit_datagen.sh lens=sharp_prime
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${DATA_DIR:?set DATA_DIR}" "${SHARDS:?set SHARDS}"
export DATA_DIR SHARDS RT_ROOT=${RT_ROOT:-$(dirname "$here")}
sb=()
if [[ " $* " == *" -- "* ]]; then
  while [[ $1 != -- ]]; do sb+=("$1"); shift; done
  shift
fi
block=${SHARDS_PER_TASK:-1}
tasks=$(((SHARDS + block - 1) / block))
array=$(sbatch --parsable "${sb[@]}" --array="0-$((tasks - 1))${MAX_PARALLEL:+%$MAX_PARALLEL}" \
  "$here/datagen.sbatch" "$@")
array=${array%%;*}
manifest=$(sbatch --parsable "${sb[@]}" --dependency="afterok:$array" --kill-on-invalid-dep=yes \
  "$here/datagen_manifest.sbatch" "$@")
manifest=${manifest%%;*}
echo "datagen array $array ($tasks tasks) -> manifest job $manifest"
echo "DATAGEN_JOB=$array MANIFEST_JOB=$manifest"
