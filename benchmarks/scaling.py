"""Throughput of one sweep spread over 1, 2, 4 and 8 devices (members split evenly over them).

    python benchmarks/scaling.py                      # fake CPU devices, one subprocess each
    python benchmarks/scaling.py --members=64 --epochs=3 --devices=1,2,4,8

Each device count runs the same grid sweep (`python -m sweeps.toy`, MLPs on the circle set) in
its own process and reads its counted WORKDIR/summary.json: throughput is member-epochs per
second of training (compiles and checkpoints excluded, as counted by the sweep itself), and the
slots per device come from the plan.

On a CPU the devices are fake (XLA_FLAGS=--xla_force_host_platform_device_count=N): all N share
the same cores, so the ratio measures the overhead of splitting members over devices (sharded
programs, placement, gathers), not a speed-up; about 1.0x means splitting costs nothing. The
figure that means a speed-up needs N real accelerators (not measured here).

Measured here (2-core CPU shared with other jobs, 32 members x 3 epochs, widths [64, 64]), member-
epochs per training second: 1 device 101, 2: 73 (0.72x), 4: 59 (0.59x), 8: 79 (0.78x); one program
each time, compiles 35-44 s. Numbers move 30-50% with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(devices: int, members: int, epochs: int) -> dict:
  lrs = ", ".join(f"{0.01 + 0.3 * i / max(members - 1, 1):.4f}" for i in range(members))
  workdir = tempfile.mkdtemp(prefix=f"scaling{devices}_")
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  argv = [sys.executable, "-m", "sweeps.toy", f"--workdir={workdir}", "--strategy=grid",
          f"--epochs={epochs}", "--noprogress", "--test_top=0", "--space=model=mlp",
          "--space=widths=[64, 64]", "--space=batch_size=32", f"--space=lr=grid({lrs})"]
  result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
  if result.returncode != 0:
    raise SystemExit(f"{devices} devices: the sweep failed:\n{result.stderr[-2000:]}")
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(workdir, "plan.json")) as f:
    plan = json.load(f)[0]
  slots = max(n for b in plan["buckets"] for n in b["slots"])
  summary["slots_per_device"] = slots // summary["devices"]
  summary["throughput"] = members * epochs / max(summary["train_seconds"], 1e-9)
  return summary


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--members", type=int, default=32)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--devices", default="1,2,4,8")
  args = parser.parse_args()
  counts = [int(n) for n in args.devices.split(",")]
  print("fake CPU devices share the same cores: the ratio measures the overhead of splitting "
        "members over devices, not a speed-up")
  print(f"{'devices':>7}  {'slots/dev':>9}  {'member-epochs/s':>15}  {'vs 1':>5}  "
        f"{'train s':>7}  {'compile s':>9}  {'programs':>8}")
  base = None
  for devices in counts:
    s = run(devices, args.members, args.epochs)
    base = base or s["throughput"]
    print(f"{s['devices']:>7}  {s['slots_per_device']:>9}  {s['throughput']:>15.1f}  "
          f"{s['throughput'] / base:>4.2f}x  {s['train_seconds']:>7.2f}  "
          f"{s['compile_seconds']:>9.2f}  {s['programs_compiled']:>8}", flush=True)


if __name__ == "__main__":
  main()
