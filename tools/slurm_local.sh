#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try sweeps and to run the `slurm` tests (CI starts it):
#   bash tools/slurm_local.sh start     (as root) install Debian's SLURM + munge if missing, start munged,
#                                       slurmctld and slurmd, wait until the node takes jobs
#   bash tools/slurm_local.sh stop      stop exactly the daemons `start` started (pids in $STATE/pids)
#   bash tools/slurm_local.sh status
# Exit codes of start: 0 started now, 1 a cluster was already up (left as it is, and `stop` will not touch it),
# 3 not root, 4 packages not installable, 5 did not come up.
# The recipe is ../shared/SLURM.md's (Debian's slurm-wlm 22.05). The node offers this machine's CPUs and ~80 % of
# its memory in one partition, `debug`, without GPUs and without accounting (submitit then warns about sacct).
set -euo pipefail
STATE="${SLURM_LOCAL_STATE:-/run/heritage_seg_slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by heritage_seg tools/slurm_local.sh"

log() { echo "slurm_local: $*" >&2; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

node_up() { sinfo -h -o "%a %T" 2>/dev/null | grep -Eq "^up (idle|mixed|allocated)"; }

start() {
  if command -v sinfo >/dev/null && node_up; then
    log "a SLURM cluster is already up here; leaving it as it is"; return 1
  fi
  [ "$(id -u)" = 0 ] || { log "start needs root (it installs packages and starts daemons)"; return 3; }
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge (Debian packages)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge) \
      >/tmp/slurm_local_apt.log 2>&1 || { log "packages not installable (see /tmp/slurm_local_apt.log)"; return 4; }
  fi
  mkdir -p "$STATE" /etc/munge /var/lib/munge /var/log/munge /run/munge /var/spool/slurmd /var/spool/slurmctld
  : > "$STATE/pids"
  [ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 400 /etc/munge/munge.key
  if ! alive "$(cat /run/munge/munged.pid 2>/dev/null)"; then
    su -s /bin/sh munge -c /usr/sbin/munged
    echo "munged $(cat /run/munge/munged.pid)" >> "$STATE/pids"
  fi
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    log "$CONF exists and was not written by this script; it is left alone (start your cluster yourself)"
    return 5
  fi
  local host cpus mem
  host="$(hostname)"
  cpus="$(nproc)"
  mem="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)"
  cat > "$CONF" <<CONF
$MARK
ClusterName=heritage
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  slurmctld -c    # -c: a fresh job state, nothing left over from an earlier cluster
  slurmd
  for _ in $(seq 60); do
    if node_up; then
      echo "slurmctld $(cat /run/slurmctld.pid)" >> "$STATE/pids"
      echo "slurmd $(cat /run/slurmd.pid)" >> "$STATE/pids"
      log "up: $(sinfo -h -o '%P %D %c CPUs %m MB %T')"
      return 0
    fi
    sleep 1
  done
  log "the node did not come up in 60 s (see /var/log/slurmctld.log, /var/log/slurmd.log)"
  for f in /run/slurmctld.pid /run/slurmd.pid; do
    alive "$(cat "$f" 2>/dev/null)" && echo "$(basename "$f" .pid) $(cat "$f")" >> "$STATE/pids"
  done
  stop
  return 5
}

stop() {
  [ -f "$STATE/pids" ] || { log "nothing started by this script"; return 0; }
  # slurmd and slurmctld first, munged last (they authenticate through it)
  for name in slurmd slurmctld munged; do
    pid="$(awk -v n="$name" '$1 == n {print $2}' "$STATE/pids")"
    if alive "$pid"; then
      kill "$pid"
      for _ in $(seq 20); do alive "$pid" || break; sleep 0.5; done
      alive "$pid" && kill -9 "$pid"
      log "stopped $name ($pid)"
    fi
  done
  rm -f "$STATE/pids"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if node_up; then sinfo; else echo "no SLURM node up"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
