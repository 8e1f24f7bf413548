#!/usr/bin/env bash
# A throwaway single-node Slurm cluster for the tests (and for trying the templates):
# munge, MariaDB + slurmdbd (accounting, which submitit needs), slurmctld and slurmd,
# all configured and logging under one temporary directory.
#
#   scripts/local_slurm.sh start    install (when root and missing) and start; prints
#                                   the line to eval: export SLURM_CONF=...
#   scripts/local_slurm.sh status   exit 0 when the cluster answers (prints sinfo)
#   scripts/local_slurm.sh env      print the export line of a running cluster
#   scripts/local_slurm.sh stop     stop every daemon it started, by pid (never by name)
#
# LOCAL_SLURM_DIR (default /tmp/residual-train-slurm) holds slurm.conf, state, logs, the
# database and the pid files. Jobs run as the submitting user; the daemons as root, so
# `start` needs root (CI containers). On any failure it prints the reason and exits 1;
# the test suite then skips the Slurm tests and prints that reason.
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/residual-train-slurm}
CLUSTER=rtlocal
DB_PORT=${LOCAL_SLURM_DB_PORT:-3307}
DBD_PORT=${LOCAL_SLURM_DBD_PORT:-6819}
CTLD_PORT=${LOCAL_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${LOCAL_SLURM_SLURMD_PORT:-6818}
PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

say() { echo "local_slurm: $*" >&2; }
fail() {
  say "cannot start: $*"
  cmd_stop >/dev/null 2>&1 || true  # leave nothing half-started
  echo "$*" >"$DIR/failed" 2>/dev/null || true
  exit 1
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local t=$1 what=$2; shift 2
  for ((i = 0; i < t * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  fail "$what did not come up within ${t}s (logs in $DIR/log)"
}

install() {
  local missing=()
  for b in slurmctld slurmd sbatch munged slurmdbd mariadbd; do
    command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || missing+=("$b")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || fail "not root and missing: ${missing[*]} (apt-get install ${PKGS[*]})"
  command -v apt-get >/dev/null || fail "no apt-get to install ${PKGS[*]}"
  say "installing ${PKGS[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PKGS[@]}" >"$DIR/log/apt.log" 2>&1 ||
    { apt-get update -q >>"$DIR/log/apt.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PKGS[@]}" >>"$DIR/log/apt.log" 2>&1; } ||
    fail "apt-get install ${PKGS[*]} failed (see $DIR/log/apt.log)"
}

write_conf() {
  local host node
  host=$(hostname -s)
  node=$(/usr/sbin/slurmd -C | head -1 | sed "s/NodeName=[^ ]*/NodeName=$host/; s/ UpTime=.*//")
  [[ $node == NodeName=* ]] || fail "slurmd -C gave no node line"
  cat >"$DIR/slurm.conf" <<EOF
# written by scripts/local_slurm.sh — a single-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
# a requeued job may start again after cred_expire + 1 s (default 120 s)
AuthInfo=cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5,sched_interval=5
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
JobAcctGatherType=jobacct_gather/none
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$DIR/slurmdbd.conf" <<EOF
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
AuthType=auth/munge
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"
}

start_munge() {
  if pid_alive /run/munge/munged.pid; then return 0; fi
  mkdir -p /run/munge
  chown munge:munge /run/munge 2>/dev/null || true
  [[ -f /etc/munge/munge.key ]] || /usr/sbin/mungekey --create >/dev/null 2>&1 ||
    fail "no munge key (/etc/munge/munge.key)"
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
  else
    /usr/sbin/munged || fail "munged did not start"
  fi
  touch "$DIR/run/munged.ours"
  wait_for 10 munged munge -n
}

start_mariadb() {
  local db=$DIR/mysql
  if [[ ! -d $db/mysql ]]; then
    mkdir -p "$db"
    mariadb-install-db --no-defaults --datadir="$db" --user=root --auth-root-authentication-method=normal \
      >"$DIR/log/mariadb-install.log" 2>&1 || fail "mariadb-install-db failed (see $DIR/log/mariadb-install.log)"
  fi
  mariadbd --no-defaults --datadir="$db" --user=root --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mariadb.pid" \
    --log-error="$DIR/log/mariadb.log" --skip-name-resolve >/dev/null 2>&1 &
  wait_for 30 MariaDB mariadb --no-defaults -uroot --socket="$DIR/run/mysqld.sock" -e "select 1"
  mariadb --no-defaults -uroot --socket="$DIR/run/mysqld.sock" <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

cmd_start() {
  if cmd_status >/dev/null 2>&1; then say "already running"; cmd_env; return 0; fi
  rm -rf "$DIR"
  mkdir -p "$DIR"/{state,spool,run,log}
  install
  export SLURM_CONF=$DIR/slurm.conf
  write_conf
  start_munge
  start_mariadb
  # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF
  /usr/sbin/slurmdbd || fail "slurmdbd did not start (see $DIR/log/slurmdbd.log)"
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
  /usr/sbin/slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start (see $DIR/log/slurmctld.log)"
  /usr/sbin/slurmd -f "$SLURM_CONF" || fail "slurmd did not start (see $DIR/log/slurmd.log)"
  wait_for 30 "an idle node" bash -c "sinfo -h -o %t | grep -qx idle"
  wait_for 30 "accounting (sacct)" sacct -n -X
  rm -f "$DIR/failed"
  say "up: $(sinfo -h -o '%P %D nodes %c cpus %t')"
  cmd_env
}

cmd_env() { echo "export SLURM_CONF=$DIR/slurm.conf"; }

cmd_status() {
  [[ -f $DIR/slurm.conf ]] || { echo "not started ($DIR/slurm.conf missing)"; return 1; }
  SLURM_CONF=$DIR/slurm.conf sinfo -h -o '%P %D nodes %c cpus %t' 2>&1 || return 1
  SLURM_CONF=$DIR/slurm.conf sacct -n -X >/dev/null 2>&1 || { echo "accounting (sacct) not answering"; return 1; }
}

stop_pid() {  # stop_pid PIDFILE NAME
  local f=$1 p
  pid_alive "$f" || return 0
  p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
  say "$2 (pid $p) did not stop on TERM; sending KILL"
  kill -9 "$p" 2>/dev/null || true
}

cmd_stop() {
  [[ -d $DIR ]] || { say "nothing to stop ($DIR missing)"; return 0; }
  if [[ -f $DIR/slurm.conf ]]; then
    SLURM_CONF=$DIR/slurm.conf scancel --user="$(id -un)" >/dev/null 2>&1 || true
    SLURM_CONF=$DIR/slurm.conf scontrol shutdown >/dev/null 2>&1 || true
  fi
  stop_pid "$DIR/run/slurmd.pid" slurmd
  stop_pid "$DIR/run/slurmctld.pid" slurmctld
  stop_pid "$DIR/run/slurmdbd.pid" slurmdbd
  stop_pid "$DIR/run/mariadb.pid" mariadbd
  [[ -f $DIR/run/munged.ours ]] && stop_pid /run/munge/munged.pid munged
  rm -f "$DIR/run/munged.ours"
  say "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
