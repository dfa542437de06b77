"""This engine on the seed space, through its public API (the same calls as the CLI).

  python benchmarks/peers/engine_runner.py --strategy=hyperband --data_dir=... --out=trace.json

As a user would run it: the flagfiles as they are, with the engine's defaults (--pack=auto:
members of different MLP shapes may share a program where the cost model says it pays), only the
budget changed. random, bayes and hyperband search the seed flagfile's space and training
(cifar_mlp_random.flags: constant Adam 1e-3, no augmentation, as Keras Tuner's trials train);
hyperband with eta 3, its two most exploratory brackets and a first rung of 1 epoch, the
budget's epochs as R (cifar_mlp_fast.flags adds a cosine schedule and augmentation, which the
other contenders do not have, and a 3-epoch first rung). PBT can only vary numbers inside one compiled program, so its
population fixes the architecture to [1024, 512] relu and lets PBT tune lr, L2 and dropout,
which the seed space holds fixed or on a coarse grid.
"""

from __future__ import annotations

import os
import tempfile

import common

from sweeps import api
from sweeps.run import EarlyStopping, SweepLoop

HYPERBAND = ["--eta=3", "--min_epochs=1", "--trials=2"]   # its two most exploratory brackets
PBT_SPACE = ["--space=depth=2", "--space=widths=[1024, 512]", "--space=activation=relu",
             "--space=lr=loguniform(3e-4, 3e-3)", "--space=l2=loguniform(1e-5, 1e-4)",
             "--space=dropout=uniform(0.0, 0.5)"]


def argv_for(strategy: str, budget: common.Budget) -> list[str]:
  """The sweep flags of one engine contender (the seed flagfile plus the budget)."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  argv = [f"--flagfile={os.path.join(repo, common.FLAGFILE)}", f"--strategy={strategy}",
          f"--epochs={budget.epochs}", f"--seed={budget.seed}", "--noprogress",
          f"--workdir={tempfile.mkdtemp(prefix='engine_')}"]   # validated; the loop writes nothing
  if strategy in ("random", "bayes"):
    argv.append(f"--trials={budget.trials}")
  if strategy == "hyperband":
    argv += HYPERBAND
  if strategy == "bayes":
    argv.append(f"--batch={max(2, budget.trials // 5)}")   # 5 rounds of asks
  if strategy == "pbt":
    argv += PBT_SPACE + [f"--batch={max(4, min(16, budget.trials))}",
                         f"--pbt_interval={1 if budget.epochs < 4 else 2}"]
  return argv


def main():
  import jaxnn
  jaxnn.configure()   # as before, when importing jaxnn set it: the same random draws
  args, budget = common.runner_args(strategy=("random", "hyperband", "bayes", "pbt"))
  cfg = api.config_from_argv(argv_for(args.strategy, budget), "cifar10")
  _, strategy = api.validate(cfg)
  dataset = common.load_split(args.data_dir, budget)
  trace = common.Trace()
  seen: dict[int, int] = {}

  def on_epoch(loop, chunk):
    del chunk
    for member_id, run in loop.members.items():
      history = run.history["val_acc"]
      for value in history[seen.get(member_id, 0):]:
        trace.add(value if value is not None else 0.0, run.param_count, member_id)
      seen[member_id] = len(history)

  # The loop as the CLI builds it (sweeps/cli.py run_sweep), without the workdir's writers.
  loop = SweepLoop(strategy, dataset, objective=cfg.objective,
                   early_stopping=EarlyStopping(cfg.patience, cfg.min_delta, cfg.monitor),
                   test_top=0, on_epoch=on_epoch, conv_vectorize=cfg.conv_vectorize,
                   memory_budget_bytes=(int(cfg.memory_budget_mb * 2**20)
                                        if cfg.memory_budget_mb else None),
                   dtype=cfg.dtype, pack=cfg.pack)
  runs = loop.run()
  # The loop's own split of its wall time (compile vs train), to say where the time went.
  trace.dump(args.out, trials=len(runs), summary=loop.summary())


if __name__ == "__main__":
  main()
