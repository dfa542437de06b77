#!/usr/bin/env bash
# N processes of one JAX job on this machine: the way the tests run a multi-host sweep.
#
#   launch/local.sh NUM_PROCESSES COMMAND [ARGS...]
#   launch/local.sh 2 python -m sweeps.toy --flagfile=sweeps/flags/toy_playground.flags --workdir=/tmp/toy2
#
# Every process gets (what `launch/multihost.py` reads):
#   JAX_COORDINATOR_ADDRESS=127.0.0.1:$LAUNCH_PORT   (default: a free port)
#   JAX_NUM_PROCESSES=NUM_PROCESSES
#   JAX_PROCESS_ID=0..NUM_PROCESSES-1
# and, when LAUNCH_DEVICES_PER_PROCESS=D is set (fake CPU devices, for testing on one CPU):
#   JAX_PLATFORMS=cpu  XLA_FLAGS="$XLA_FLAGS --xla_force_host_platform_device_count=D"
# Process 0's output goes to this terminal; process i's to $LAUNCH_LOG_DIR/process_i.log when
# LAUNCH_LOG_DIR is set (with its pid in process_i.pid), else to this terminal too. The exit status is the first non-zero one
# of the processes (0 when all succeed). Ctrl-C / SIGTERM are passed on to every process.
set -uo pipefail
if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: launch/local.sh NUM_PROCESSES COMMAND [ARGS...]" >&2
  exit 2
fi
num="$1"; shift
port="${LAUNCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
export JAX_COORDINATOR_ADDRESS="127.0.0.1:${port}" JAX_NUM_PROCESSES="$num"
if [[ -n "${LAUNCH_DEVICES_PER_PROCESS:-}" ]]; then
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${LAUNCH_DEVICES_PER_PROCESS}"
fi
pids=()
if [[ -n "${LAUNCH_LOG_DIR:-}" ]]; then mkdir -p "$LAUNCH_LOG_DIR"; fi
for ((i = 0; i < num; i++)); do
  if [[ $i -gt 0 && -n "${LAUNCH_LOG_DIR:-}" ]]; then
    JAX_PROCESS_ID=$i "$@" >"$LAUNCH_LOG_DIR/process_$i.log" 2>&1 &
  else
    JAX_PROCESS_ID=$i "$@" &
  fi
  pids+=($!)
  if [[ -n "${LAUNCH_LOG_DIR:-}" ]]; then echo $! >"$LAUNCH_LOG_DIR/process_$i.pid"; fi
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
status=0
for pid in "${pids[@]}"; do
  wait "$pid"; rc=$?
  # A trapped signal interrupts wait: wait again for the real exit status.
  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; rc=$?; done
  if [[ $status -eq 0 && $rc -ne 0 ]]; then status=$rc; fi
done
exit $status
