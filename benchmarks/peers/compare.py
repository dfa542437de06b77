"""The seed CIFAR-10 MLP study, side by side: Keras Tuner, Optuna + Flax, and this engine.

  pip install -e ".[peers]"    # keras-tuner and tensorflow-cpu; never needed by the tests
  python benchmarks/peers/compare.py --data_dir=../shared/datasets            # full budget
  python benchmarks/peers/compare.py --data_dir=../shared/datasets --quick    # smoke run

Contenders, one after another on the same machine, the same split (the engine's stratified
40000 / 10000 split of the CIFAR-10 train set) and the same space
(sweeps/flags/cifar_mlp_random.flags; the full budget is common.FULL, 10 trials x 3 epochs):
  kt_random, kt_hyperband   Keras Tuner RandomSearch and Hyperband (TensorFlow, Keras 3)
  optuna_tpe                Optuna TPE + MedianPruner driving a plain Flax loop (optuna_flax.py)
  engine_random, engine_hyperband, engine_bayes, engine_pbt   this engine (engine_runner.py)
Each runs in its own process (TensorFlow and JAX never share one) and writes a trace of
(seconds, val accuracy) per member-epoch. The target is the best val accuracy Keras Tuner's
RandomSearch reaches with its full budget; the table gives, for each contender, the time to
first reach it, that time over Keras Tuner RandomSearch's whole wall time (goal for the
engine: <= 1/3), and the best val accuracy within its own budget.

Figures on a machine shared with other work move by 30-50%: compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import common

HERE = os.path.dirname(os.path.abspath(__file__))
CONTENDERS = {
    "kt_random": ["keras_tuner_runner.py", "--tuner=random"],
    "kt_hyperband": ["keras_tuner_runner.py", "--tuner=hyperband"],
    "optuna_tpe": ["optuna_flax.py"],
    "engine_random": ["engine_runner.py", "--strategy=random"],
    "engine_hyperband": ["engine_runner.py", "--strategy=hyperband"],
    "engine_bayes": ["engine_runner.py", "--strategy=bayes"],
    "engine_pbt": ["engine_runner.py", "--strategy=pbt"],
}
TARGET_FROM = "kt_random"


def run_contender(name: str, args, outdir: str) -> dict | None:
  out = os.path.join(outdir, f"{name}.json")
  if args.reuse and os.path.exists(out):
    print(f"--- {name}: reusing {out}", flush=True)
    with open(out) as f:
      return json.load(f)
  script, *flags = CONTENDERS[name]
  cmd = [sys.executable, os.path.join(HERE, script), *flags, f"--data_dir={args.data_dir}",
         f"--out={out}", f"--budget={args.budget}"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  print(f"--- {name}: {' '.join(cmd[1:])}", flush=True)
  result = subprocess.run(cmd, env=env, cwd=os.path.dirname(os.path.dirname(HERE)))
  if result.returncode != 0:
    print(f"{name} failed with status {result.returncode}", flush=True)
    return None
  with open(out) as f:
    return json.load(f)


def table(results: dict, target: float | None) -> str:
  """The comparison, one row per contender: budget spent, wall, best, time to target, and
  where the time went (first result, seconds per million parameter-epochs, engine compiles)."""
  kt_wall = results.get(TARGET_FROM, {}).get("wall") if results.get(TARGET_FROM) else None
  lines = [f"target: {TARGET_FROM} best val acc = "
           + (f"{target:.4f}" if target is not None else "n/a"),
           "| contender | member-epochs | wall s | best val acc | s to target | / kt_random wall "
           "| members >= target | first result s | s per M param-epochs | compile s (programs) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, res in results.items():
    if res is None:
      lines.append(f"| {name} | failed | | | | | | | | |")
      continue
    points = res["points"]
    best, reached = common.summarize(points, target)
    ratio = f"{reached / kt_wall:.2f}" if reached is not None and kt_wall else "-"
    first = f"{points[0][0]:.0f}" if points else "-"
    param_epochs = sum(p[2] for p in points if len(p) > 2) / 1e6
    rate = f"{res['wall'] / param_epochs:.2f}" if param_epochs else "-"
    summary = res.get("summary") or {}
    compiled = (f"{summary['compile_seconds']:.0f} ({summary['programs_compiled']})"
                if summary else "")
    lines.append(f"| {name} | {len(points)} | {res['wall']:.0f} | {best:.4f} | "
                 + (f"{reached:.0f}" if reached is not None else "not reached")
                 + f" | {ratio} | {common.members_reaching(points, target)} | {first} | {rate} "
                 f"| {compiled} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=os.environ.get("JAXNN_DATA_DIR", "../shared/datasets"))
  parser.add_argument("--budget", choices=tuple(common.BUDGETS), default="full",
                      help="full: the seed budget (common.FULL); quick: a smoke run "
                           "(common.QUICK); probe: 3 configs x 1 epoch at full size, to see "
                           "where each tool's time goes (common.PROBE)")
  parser.add_argument("--quick", action="store_true", help="the same as --budget=quick")
  parser.add_argument("--only", default=",".join(CONTENDERS),
                      help="comma-separated contenders (default: all)")
  parser.add_argument("--outdir", default=None, help="where traces go (default: a temp folder)")
  parser.add_argument("--reuse", action="store_true",
                      help="read the traces already in --outdir instead of rerunning those "
                           "contenders (to finish an interrupted comparison)")
  args = parser.parse_args()
  if args.quick:
    args.budget = "quick"
  outdir = args.outdir or tempfile.mkdtemp(prefix="peers_")
  os.makedirs(outdir, exist_ok=True)
  names = [n for n in args.only.split(",") if n]
  unknown = sorted(set(names) - set(CONTENDERS))
  if unknown:
    parser.error(f"unknown contenders {unknown}; known: {', '.join(CONTENDERS)}")
  results = {name: run_contender(name, args, outdir) for name in names}
  ref = results.get(TARGET_FROM)
  target = common.summarize(ref["points"], None)[0] if ref else None
  print(table(results, target))
  print(f"traces in {outdir}")


if __name__ == "__main__":
  main()
