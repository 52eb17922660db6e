#!/usr/bin/env bash
# Proves launch/slurm.sbatch's preemption path on a one-node Slurm cluster started here.
#   tests/slurm/preempt_test.sh [path/to/longctx]      (default: build/longctx; run as root)
# Installs slurm-wlm and munge from Debian when missing, starts munged, slurmctld and slurmd
# on a private socket, ports and directories, then submits two 2-rank jobs with the template:
#   A is sent SIGUSR1 mid-run (as --signal=USR1@120 does before a time limit): it checkpoints,
#     exits 0, the script requeues it, and the requeued job resumes and finishes;
#   B runs the same config uninterrupted.
# A's metrics.jsonl must match B's step for step, bit for bit, A must have been requeued once
# (and B never), and both must end with the same final checkpoint. Everything started here is
# stopped on exit; the exit status is non-zero with a message on any failure. KEEP_TMP=1 keeps
# the temporary directory (config, logs, runs) for a look afterwards.
set -euo pipefail
started=$SECONDS
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

fail() {
  echo "preempt_test: FAIL: $*" >&2
  exit 1
}

bin="${1:-$repo/build/longctx}"
[ -x "$bin" ] || fail "$bin is not an executable; build longctx first (tools/build.sh)"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
[ "$(id -u)" -eq 0 ] || fail "run as root: the test installs packages and starts Slurm's daemons"

# What cleanup undoes, set as each thing is made.
own_policy=""      # the policy-rc.d written for the install
tmp=""             # the cluster's directory
ctl_up=""          # slurmctld answers: jobs can be cancelled
jobs_submitted=()

stop_pid_file() {  # stop_pid_file FILE NAME: ends the daemon whose pid FILE holds
  local pid
  [ -s "$1" ] || return 0
  pid="$(cat "$1")"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "preempt_test: $2 (pid $pid) did not stop; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  set +e
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  if [ -n "$ctl_up" ] && [ ${#jobs_submitted[@]} -gt 0 ]; then
    scancel "${jobs_submitted[@]}" 2>/dev/null
    for _ in $(seq 1 50); do  # let slurmd end the jobs' steps before it stops
      [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  if [ -n "$tmp" ]; then
    if [ $status -ne 0 ]; then
      for f in "$tmp"/log/*.log "$tmp"/*.out; do
        [ -s "$f" ] && { echo "---- $f (last 25 lines)"; tail -n 25 "$f"; } >&2
      done
    fi
    stop_pid_file "$tmp/slurmd.pid" slurmd
    stop_pid_file "$tmp/slurmctld.pid" slurmctld
    stop_pid_file "$tmp/munge/munged.pid" munged
    if [ -n "${KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
  fi
  echo "preempt_test: $([ $status -eq 0 ] && echo passed || echo failed) in $((SECONDS - started)) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- packages ---------------------------------------------------------------------------
packages=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  # The packages' own services stay down: this test starts its own daemons.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" > /dev/null || fail "apt-get could not install ${missing[*]}"
  if [ -n "$own_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
    own_policy=""
  fi
fi
echo "packages ready after $((SECONDS - started)) s"

# --- a private cluster --------------------------------------------------------------------
tmp="$(mktemp -d /tmp/longctx-slurm.XXXXXX)"
chmod 755 "$tmp"  # munged insists that every directory above its socket is searchable
export SLURM_CONF="$tmp/slurm.conf"
mkdir -p "$tmp"/{munge,state,spool,log,runs,tmpfs}
touch "$tmp/plugstack.conf"  # no SPANK plugins from the machine's /etc/slurm
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 755 "$tmp/munge"
chmod 600 "$tmp/munge/munge.key"
munged --socket="$tmp/munge/munge.socket" --key-file="$tmp/munge/munge.key" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" \
  --seed-file="$tmp/munge/munged.seed" || fail "munged did not start"

# Two free TCP ports for slurmctld and slurmd (the defaults may be taken on a shared machine).
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host="$(hostname -s)"
# This machine's CPUs, sockets and memory as slurmd sees them, under the name slurmd is given.
node_line="$(slurmd -C | head -n 1)"
case "$node_line" in NodeName=*" CPUs="*) ;; *) fail "slurmd -C printed no node line: $node_line" ;; esac
node_line="NodeName=$host ${node_line#NodeName=* }"
sed -e "s|@DIR@|$tmp|g" -e "s|@HOST@|$host|g" -e "s|@CTLD_PORT@|$ctld_port|g" \
  -e "s|@SLURMD_PORT@|$slurmd_port|g" -e "s|@NODE_LINE@|$node_line|" \
  "$here/slurm.conf.in" > "$SLURM_CONF"

slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
ctl_up=1
slurmd -f "$SLURM_CONF" -N "$host" || fail "slurmd did not start"
for _ in $(seq 1 100); do
  [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
  sleep 0.2
done
[ "$(sinfo -h -o %T 2>/dev/null)" = idle ] || fail "node $host not idle after 20 s: $(sinfo 2>&1)"
echo "cluster up after $((SECONDS - started)) s: node $host, $(sinfo -h -o %c) CPUs"

# --- the two jobs -------------------------------------------------------------------------
steps=200
stop_at=60  # A is signalled once its metrics show this many steps
train_args=(--set model.d_model=64 --set model.n_layer=2 --set model.n_head=2
            --set model.d_ff=256 --set data.seq_len=128 --set train.micro_batch=4
            --set "train.steps=$steps" --set train.warmup=5 --set log.every=1
            --set "checkpoint.every=$steps")
submit() {  # submit NAME: the template's job for run directory runs/NAME; prints the job id
  (cd "$tmp" && LONGCTX_BIN="$bin" sbatch --parsable --job-name="$1" \
     "$repo/launch/slurm.sbatch" "$repo/configs/quickstart.yaml" "${train_args[@]}" \
     --set run.out_dir="$tmp/runs/$1") || fail "sbatch refused job $1"
}
job_field() {  # job_field ID KEY: KEY's value in scontrol show job ID
  scontrol show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}
steps_logged() {  # steps_logged METRICS_FILE: how many training steps it holds so far
  local n=0
  [ -f "$1" ] && n="$(grep -c '"loss"' "$1")"
  echo "${n:-0}"
}

job_a="$(submit preempted)"
jobs_submitted+=("$job_a")
job_b="$(submit uninterrupted)"  # waits for the node until A is requeued, then runs meanwhile
jobs_submitted+=("$job_b")
echo "submitted job $job_a (to be preempted) and job $job_b (uninterrupted)"

deadline=$((SECONDS + 60))
until [ "$(steps_logged "$tmp/runs/preempted/metrics.jsonl")" -ge $stop_at ]; do
  state="$(job_field "$job_a" JobState)"
  case "$state" in PENDING | CONFIGURING | RUNNING) ;; *) fail "job $job_a is $state before step $stop_at" ;; esac
  [ $SECONDS -lt $deadline ] || fail "job $job_a did not reach step $stop_at within 60 s"
  sleep 0.1
done
# Steps only, not the batch shell: what --signal=USR1@120 (without B:) delivers.
scancel --signal=USR1 "$job_a" || fail "scancel --signal=USR1 $job_a failed"
echo "sent SIGUSR1 to job $job_a at step $(steps_logged "$tmp/runs/preempted/metrics.jsonl")"

wait_done() {  # wait_done ID SECONDS: until the job is COMPLETED; fails on any other end
  local deadline=$((SECONDS + $2)) state
  while :; do
    state="$(job_field "$1" JobState)"
    case "$state" in
      COMPLETED) return 0 ;;
      PENDING | RUNNING | COMPLETING | CONFIGURING | REQUEUED | REQUEUE_FED) ;;
      *) fail "job $1 ended as $state (reason $(job_field "$1" Reason))" ;;
    esac
    [ $SECONDS -lt $deadline ] || fail "job $1 not done within $2 s (state $state)"
    sleep 0.5
  done
}
wait_done "$job_b" 120
wait_done "$job_a" 120
echo "both jobs completed after $((SECONDS - started)) s"

# --- checks -------------------------------------------------------------------------------
out_a="$tmp/preempted-$job_a.out"
out_b="$tmp/uninterrupted-$job_b.out"
[ "$(job_field "$job_a" Restarts)" = 1 ] ||
  fail "job $job_a: Restarts=$(job_field "$job_a" Restarts), expected 1"
[ "$(job_field "$job_b" Restarts)" = 0 ] ||
  fail "job $job_b: Restarts=$(job_field "$job_b" Restarts), expected 0 (never preempted)"
grep -q "^stopped by SIGUSR1 after step" "$out_a" || fail "$out_a: no 'stopped by SIGUSR1'"
grep -q "requeueing job $job_a" "$out_a" || fail "$out_a: the script did not requeue the job"
ckpt_step="$(sed -n 's/^stopped by SIGUSR1 after step \([0-9]*\):.*/\1/p' "$out_a")"
grep -q "resumed from .*/step_$(printf %08d "$ckpt_step").h5 at step $ckpt_step" "$out_a" ||
  fail "$out_a: the requeued job did not resume from step $ckpt_step's checkpoint"
grep -q "^done: " "$out_a" || fail "$out_a: the resumed run did not finish"
grep -q "requeueing" "$out_b" && fail "$out_b: the uninterrupted job was requeued"
[ ! -e "$tmp/.longctx-preempted-$job_a" ] || fail "the preemption marker was left behind"

python3 - "$tmp/runs/preempted/metrics.jsonl" "$tmp/runs/uninterrupted/metrics.jsonl" \
  "$steps" <<'EOF' || fail "the preempted run's metrics differ from the uninterrupted run's"
import json, sys
def steps(path):
    rows = {}
    for n, line in enumerate(open(path), 1):
        j = json.loads(line, parse_float=str, parse_int=str)  # numbers as their exact text
        if "loss" not in j:
            continue
        if j["step"] in rows:
            sys.exit(f"{path}:{n}: step {j['step']} logged twice")
        rows[j["step"]] = (j["loss"], j["grad_norm"])
    return rows
a, b, want = steps(sys.argv[1]), steps(sys.argv[2]), int(sys.argv[3])
if len(b) != want:
    sys.exit(f"{sys.argv[2]}: {len(b)} steps logged, expected {want}")
if a.keys() != b.keys():
    sys.exit(f"steps only in one run: {sorted(a.keys() ^ b.keys(), key=int)[:10]}")
diff = [s for s in b if a[s] != b[s]]
if diff:
    s = diff[0]
    sys.exit(f"{len(diff)} steps differ; first: step {s} (loss, grad_norm) {a[s]} vs {b[s]}")
print(f"metrics: {len(a)} steps, loss and grad_norm identical (last loss {a[max(a, key=int)][0]})")
EOF

final="$(printf 'step_%08d.h5' "$steps")"
for run in preempted uninterrupted; do
  ckpt="$tmp/runs/$run/checkpoints/$final"
  [ -f "$ckpt" ] || fail "$ckpt: no final checkpoint"
  "$bin" ckpt export "$ckpt" --out "$tmp/export-$run" > /dev/null ||
    fail "$ckpt: longctx ckpt export failed"
done
cmp -s "$tmp/export-preempted/model.safetensors" "$tmp/export-uninterrupted/model.safetensors" ||
  fail "the final checkpoints' weights differ"
echo "final checkpoints: $final in both runs, identical weights"
echo "job $job_a: preempted after step $ckpt_step, requeued (Restarts=1), resumed and finished"
