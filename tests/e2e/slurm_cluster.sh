# A private single-node Slurm cluster for a test (sourced): munged with its own key, socket and pid
# files, slurmctld -D and slurmd -D with a private slurm.conf (one node, NodeName=localhost, CPUs=2,
# cons_tres, linuxproc, no task plugin, no accounting), every state file, socket and log under one
# scratch folder, on two free ports. Clients find it through SLURM_CONF.
#   slurm_up DIR    start it (about a second); returns non-zero with the logs printed when it fails
#   slurm_down      cancel every job, wait for an empty queue, stop the daemons by the PIDs started
# No accounting: final job states come from `scontrol show job -o` / `squeue -t all` (kept for
# MinJobAge=300 s after a job ends); there is no sacct.
SLURM_PIDS=()

slurm_up() {
  local dir=$1
  SLURM_DIR=$dir
  rm -rf "$dir"; mkdir -p "$dir"/{munge,state,spool,log}
  chmod 700 "$dir/munge"
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge/munge.key"
  munged -F --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" \
    >"$dir/log/munged.out" 2>&1 &
  SLURM_PIDS+=($!)
  local ports
  ports=$(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
  set -- $ports
  cat >"$dir/slurm.conf" <<CONF
ClusterName=qbtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=root
SlurmctldPort=$1
SlurmdPort=$2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=300
KillWait=15
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$dir/slurm.conf
  local i
  for i in $(seq 50); do [ -S "$dir/munge/munge.sock" ] && break; sleep 0.1; done
  slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
  SLURM_PIDS+=($!)
  slurmd -D -N localhost -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
  SLURM_PIDS+=($!)
  for i in $(seq 300); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then return 0; fi
    sleep 0.1
  done
  echo "slurm_up: the node did not come up in 30 s" >&2
  tail -n 20 "$dir"/log/* >&2
  return 1
}

slurm_down() {
  [ ${#SLURM_PIDS[@]} -eq 0 ] && return 0
  local jobs i p
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  [ -n "$jobs" ] && scancel $jobs 2>/dev/null
  for i in $(seq 300); do
    [ -z "$(squeue -h -t PD,R,CG,CF,S 2>/dev/null)" ] && break
    sleep 0.1
  done
  # Daemons in reverse order: slurmd, slurmctld, then munged.
  for ((i = ${#SLURM_PIDS[@]} - 1; i >= 0; i--)); do
    p=${SLURM_PIDS[$i]}
    kill -TERM "$p" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  SLURM_PIDS=()
}
