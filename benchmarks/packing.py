"""Packed programs vs one program per shape (--pack=auto vs --pack=off), measured in one run.

    python benchmarks/packing.py            # the three cases below at CPU sizes (tens of minutes)
    python benchmarks/packing.py --quick    # smoke run: tiny subsets, few members (minutes)

Cases (the same sweep twice in this one process, jit caches cleared before each run):
  (a) cifar_mlp: sweeps/flags/cifar_mlp_random.flags (40 MLPs, depth 1-5, a width per layer,
      relu/gelu/tanh), one epoch on a subset of the CIFAR-10 JPEG copy;
  (b) mnist_opt: sweeps/flags/mnist_optimizers.flags (optimizer x activation ablation), reduced
      to one seed and one epoch on an MNIST subset;
  (c) mnist_64: 64 random MLPs on MNIST (widths 32-256, depth 1-3, relu/tanh/gelu), one epoch.
For each: programs compiled (traces of the train-epoch program, counted in
jaxnn.population.TRACE_COUNTS), compile seconds (JAX's trace + lowering + backend compile
events), training seconds (the rest of the sweep loop) and the total, and the off/auto ratio.
Goals on the 2-core CPU: (a) <= 4 programs and at most 10% slower than off; (b) <= 8 programs;
(c) at least 2x faster end to end. The machine is shared: timings move by 30-50% with other
work, so compare the two columns of one run, not figures of different runs.

Measured figures live in the README ("Packing").
"""

from __future__ import annotations

import collections
import os
import resource
import time

import jax
from absl import app, flags

from jaxnn import data, population
from sweeps import cli
from sweeps import plan as plan_lib
from sweeps.run import EarlyStopping, SweepLoop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("JAXNN_SHARED_DATASETS",
                        os.path.join(os.path.dirname(os.path.dirname(REPO)), "shared", "datasets"))

flags.DEFINE_bool("quick", False, "Smoke run: tiny subsets and few members.")
flags.DEFINE_list("cases", ["cifar_mlp", "mnist_opt", "mnist_64"], "Which cases to run.")
flags.DEFINE_string("datasets", SHARED, "Folder with the offline data sets.")
flags.DEFINE_integer("train_subset", 2048, "Training examples per case (full mode).")
# Default: the planner's own (the device's memory; on the CPU half the host RAM). The estimate
# is pinned to XLA's count of the compiled programs (tests/test_memory_estimate.py), so chunks fit.
flags.DEFINE_integer("memory_budget_mb", None, "The planner's memory budget per run (MiB).")
FLAGS = flags.FLAGS

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_compile_seconds = collections.Counter()


def _listen(event, duration, **_):
  if event in _COMPILE_EVENTS:
    _compile_seconds["total"] += duration


def _cases(quick: bool, train: int):
  flagfiles = os.path.join(REPO, "sweeps", "flags")
  subset = ["--train_subset=%d" % (256 if quick else train), "--val_subset=%d" % (256 if quick else 1000),
            "--epochs=1"]
  return {
      "cifar_mlp": ("cifar10", [f"--flagfile={flagfiles}/cifar_mlp_random.flags", *subset]
                    + (["--trials=8"] if quick else [])),
      "mnist_opt": ("mnist", [f"--flagfile={flagfiles}/mnist_optimizers.flags", "--seeds=1", *subset]
                    # (the optimizer line stays: the lr lines' conditions refer to it)
                    + (["--space=activation=choice(relu, tanh, elu)"] if quick else [])),
      "mnist_64": ("mnist", ["--strategy=random", "--trials=%d" % (8 if quick else 64), "--seed=0",
                             "--space=model=mlp", "--space=depth=int(1, 3)",
                             "--space=widths=per_layer(depth, choice(32, 64, 128, 256))",
                             "--space=activation=choice(relu, tanh, gelu)",
                             "--space=optimizer=adam", "--space=lr=loguniform(1e-4, 1e-2)",
                             "--space=batch_size=128", *subset]),
  }


def _run(dataset_name, argv, dataset, pack):
  cfg = cli.config_from_argv([*argv, "--test_top=0", f"--pack={pack}", "--dry_run"],
                             dataset_name)
  _, strategy = cli.validate(cfg)
  jax.clear_caches()
  population._model.cache_clear()  # noqa: SLF001 - fresh programs for a fair compile count
  before = population.TRACE_COUNTS["train_epoch"]
  _compile_seconds.clear()
  start = time.perf_counter()
  loop = SweepLoop(strategy, dataset, objective=cfg.objective, test_top=0, pack=pack,
                   memory_budget_bytes=(FLAGS.memory_budget_mb * 2**20
                                        if FLAGS.memory_budget_mb else None),
                   early_stopping=EarlyStopping(cfg.patience, cfg.min_delta, cfg.monitor))
  runs = loop.run()
  total = time.perf_counter() - start
  compile_s = _compile_seconds["total"]
  best = max((max(v for v in r.history["val_acc"] if v is not None) for r in runs
              if any(v is not None for v in r.history["val_acc"])), default=float("nan"))
  predicted = [p.predicted_seconds() for p in loop.plans]
  # The cost model's compile share (one compile per bucket), so its train share shows apart.
  model = plan_lib.cost_model()
  predicted_compile = sum(model.compile(b.spec, max(b.slots())) for p in loop.plans
                          for b in p.buckets)
  chunk = max(b.shared_bytes + b.member_bytes * max(b.slots()) for p in loop.plans
              for b in p.buckets)
  return {"chunk_mib": chunk / 2**20,
          # the process's high-water mark so far (Linux: KiB), this run and any before it
          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          "members": len(runs), "buckets": sum(len(p.buckets) for p in loop.plans),
          "predicted": sum(predicted) if None not in predicted else float("nan"),
          "predicted_compile": predicted_compile,
          "programs": population.TRACE_COUNTS["train_epoch"] - before, "compile": compile_s,
          "train": total - compile_s, "total": total, "best": best}


def main(argv):
  del argv
  jax.monitoring.register_event_duration_secs_listener(_listen)
  print(f"backend {jax.default_backend()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {'quick' if FLAGS.quick else 'full'} mode")
  cases = _cases(FLAGS.quick, FLAGS.train_subset)
  for name in FLAGS.cases:
    dataset_name, case_argv = cases[name]
    argv = [*case_argv, f"--data_dir={FLAGS.datasets}/" + ("" if dataset_name == "cifar10" else "mnist")]
    cfg = cli.config_from_argv([*argv, "--dry_run"], dataset_name)
    dataset = data.load(cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
                        train_subset=cfg.train_subset, val_subset=cfg.val_subset, test_subset=1)
    results = {}
    for pack in ("off", "auto"):
      results[pack] = r = _run(dataset_name, argv, dataset, pack)
      print(f"  ({name}) {pack}: {r['programs']} programs, compile {r['compile']:.1f} s, train "
            f"{r['train']:.1f} s, total {r['total']:.1f} s, predicted {r['predicted']:.1f} s "
            f"(compile {r['predicted_compile']:.1f} s, train "
            f"{r['predicted'] - r['predicted_compile']:.1f} s), largest chunk estimated "
            f"{r['chunk_mib']:.0f} MiB, peak RSS so far "
            f"{r['peak_rss_mib']:.0f} MiB, load average {os.getloadavg()[0]:.1f}", flush=True)
    off, auto = results["off"], results["auto"]
    print(f"\n({name}) {off['members']} members, train {cfg.train_subset}, 1 epoch")
    print(f"  {'':6} {'programs':>8} {'compile s':>10} {'train s':>9} {'total s':>9} "
          f"{'predicted':>9} {'best val':>9}")
    for pack, r in results.items():
      print(f"  {pack:6} {r['programs']:8d} {r['compile']:10.1f} {r['train']:9.1f} "
            f"{r['total']:9.1f} {r['predicted']:9.1f} {r['best']:9.3f}")
    print(f"  off/auto total: {off['total'] / auto['total']:.2f}x "
          f"(compile {off['compile'] / max(auto['compile'], 1e-9):.2f}x, "
          f"train {off['train'] / max(auto['train'], 1e-9):.2f}x); predicted "
          f"{off['predicted'] / auto['predicted']:.2f}x; load average {os.getloadavg()[0]:.1f}",
          flush=True)


if __name__ == "__main__":
  app.run(main)
