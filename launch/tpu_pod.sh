#!/usr/bin/env bash
# One sweep over every host of a Cloud TPU VM pod slice (e.g. v5litepod-32: 8 hosts x 4 chips).
# Run from your workstation; it starts the same command on every worker of the slice:
#
#   TPU_NAME=my-pod ZONE=us-west4-a launch/tpu_pod.sh python -m sweeps.cifar \
#       --flagfile=sweeps/flags/cifar_mlp_random.flags --workdir=gs://my-bucket/sweeps/cifar_mlp
#
# Prerequisites on every worker (once): the repository at ~/jaxnn-sweeps and
#   pip install -e ~/jaxnn-sweeps "jax[tpu]"
# The workdir must be shared by all hosts (a gs:// bucket, which Orbax writes natively, or a
# mounted file system). On each worker the script sets, from the TPU VM metadata server:
#   JAX_COORDINATOR_ADDRESS=<worker 0's internal IP>:8476
#   JAX_NUM_PROCESSES=<number of workers in the slice>
#   JAX_PROCESS_ID=<this worker's number, agent-worker-number>
# (jax.distributed could detect a TPU pod by itself; the sweep entry points join only when these
# variables are set, so the recipe sets them explicitly, the same way as on SLURM and locally.)
# Not run here: no TPU was available to this project; the environment mirrors launch/local.sh.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
if [[ $# -eq 0 ]]; then
  echo "usage: TPU_NAME=... ZONE=... launch/tpu_pod.sh COMMAND [ARGS...]" >&2
  exit 2
fi
command="$(printf '%q ' "$@")"
read -r -d '' remote <<REMOTE || true
set -euo pipefail
md() { curl -sf -H Metadata-Flavor:Google "http://metadata.google.internal/computeMetadata/v1/instance/attributes/\$1"; }
endpoints="\$(md worker-network-endpoints)"      # one 'id:port:ip' per worker, comma-separated
export JAX_COORDINATOR_ADDRESS="\$(echo "\$endpoints" | cut -d, -f1 | awk -F: '{print \$NF}'):8476"
export JAX_NUM_PROCESSES="\$(echo "\$endpoints" | tr , '\n' | grep -c .)"
export JAX_PROCESS_ID="\$(md agent-worker-number)"
cd ~/jaxnn-sweeps
exec ${command}
REMOTE
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$remote"
