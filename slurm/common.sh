# Sourced by the sbatch templates: project root and Python interpreter.
#   RT_ROOT    project checkout on the shared filesystem (default: where sbatch was run)
#   RT_PYTHON  interpreter (default: $RT_ROOT/.venv/bin/python, else python3)
RT_ROOT=${RT_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$RT_ROOT"
if [[ -z ${RT_PYTHON:-} ]]; then
  if [[ -x .venv/bin/python ]]; then RT_PYTHON=.venv/bin/python; else RT_PYTHON=python3; fi
fi
log() { echo "[$(date '+%F %T')] ${SLURM_JOB_NAME:-job} ${SLURM_JOB_ID:-?}: $*"; }
