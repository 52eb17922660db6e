#!/usr/bin/env bash
# Runs longctx on NP processes with mpirun: this machine, or the hosts of $HOSTFILE.
#   launch/mpirun.sh NP COMMAND [ARGS...]
#   launch/mpirun.sh 4 train configs/quickstart.yaml --set parallel.zero=1
#   HOSTFILE=hosts.txt launch/mpirun.sh 16 train configs/text.yaml
# Each rank gets cores / NP OpenMP threads (at least 1; set OMP_NUM_THREADS to override). More
# ranks than cores is allowed (oversubscribed), and running as root is allowed for containers.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
np=$1
shift
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${LONGCTX_BIN:-$root/build/longctx}"
[ -x "$bin" ] || { echo "error: $bin not found; build first (tools/build.sh)" >&2; exit 2; }
cores=$(nproc)
threads=${OMP_NUM_THREADS:-$(( cores / np > 0 ? cores / np : 1 ))}
args=(-np "$np" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads")
[ -n "${HOSTFILE:-}" ] && args+=(--hostfile "$HOSTFILE")
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun "${args[@]}" "$bin" "$@"
