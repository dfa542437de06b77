"""How long a sweep will take, from its plan and a short probe (`--dry_run --estimate`).

The probe compiles and runs each bucket's training program once for its first chunk on a slice
of the training set (PROBE_STEPS batches) and a matching slice of the validation set, twice:
the first call pays the compilation, the second is a steady epoch. The steady time is scaled to
the full splits (time is linear in steps for a fixed program) and to member-epochs (linear in
members, which holds for a vmapped chunk on one device to within the noise of a shared CPU), so
the estimate is a guide, good to tens of percent, not a promise.

`expected_member_epochs` is the sweep's total of member-epochs when the strategy fixes it up
front (grid, random, ablation, bayes, PBT); Hyperband and successive halving promote as they
learn, so only the first rung is known and the estimate says "at least".
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax
import numpy as np

PROBE_STEPS = 8
MAX_PROBES = 4   # buckets timed; the others are extrapolated (see `estimate`)


def expected_member_epochs(strategy: str, settings: Any, trials: Sequence[Any]) -> tuple[int, bool]:
  """(member-epochs of the whole sweep, exact?) from the strategy's settings and first ask."""
  first = sum(int(t.epochs) for t in trials)
  if strategy == "bayes":
    return int(settings.trials) * int(settings.epochs), True
  if strategy in ("hyperband", "successive_halving"):
    return first, False
  return first, True


@dataclasses.dataclass
class BucketTime:
  name: str
  compile_seconds: float
  member_epoch_seconds: float   # one member, one full epoch (train + validation)
  member_epochs: int            # planned in this bucket


def _slice(split, n):
  return dataclasses.replace(split, x=split.x[:n], y=split.y[:n])


def probe_bucket(bucket, dataset, vectorize: str = "vmap") -> BucketTime:
  """Times one bucket's program on its first chunk (see the module docstring)."""
  from jaxnn import population
  members = bucket.chunks()[0]
  n_train = dataset.train.x.shape[0]
  n_probe = min(n_train, bucket.spec.batch_size * PROBE_STEPS)
  n_val = dataset.val.x.shape[0]
  n_val_probe = max(1, int(round(n_val * n_probe / n_train)))
  probe = dataclasses.replace(dataset, train=_slice(dataset.train, n_probe),
                              val=_slice(dataset.val, n_val_probe))
  data = population.device_data(probe)
  ids = [m.trial.member_id for m in members]
  hparams = jax.tree_util.tree_map(jax.numpy.asarray,
                                   population.stack_rows([m.row for m in members], ids))
  state = population.init(bucket.spec, hparams, data)
  seconds = []
  for _ in range(2):
    start = time.perf_counter()
    state, metrics = population.run_epoch(bucket.spec, state, hparams, data,
                                          vectorize=vectorize,
                                          block=population.default_block(bucket.spec))
    jax.block_until_ready(metrics)
    seconds.append(time.perf_counter() - start)
  scale = (n_train + n_val) / (n_probe + n_val_probe)
  return BucketTime(bucket.spec.name(), max(seconds[0] - seconds[1], 0.0),
                    seconds[1] * scale / len(members),
                    sum(int(m.trial.epochs) for m in bucket.members))


def estimate(plan, dataset, total_member_epochs: int, exact: bool,
             max_probes: int = MAX_PROBES) -> tuple[list[BucketTime], str]:
  """Probes up to `max_probes` buckets of `plan` (spread over it) and returns (per-bucket
  times, one line for a person). An unprobed bucket is taken to compile as long as the probed
  ones on average and to train at their mean cost per parameter (dense work grows with the
  parameter count); probing every one of 42 buckets would take longer than a short probe."""
  buckets = plan.buckets
  picked = sorted(set(np.linspace(0, len(buckets) - 1, min(max_probes, len(buckets)))
                      .round().astype(int).tolist()))
  probed = {i: probe_bucket(buckets[i], dataset) for i in picked}
  mean_compile = float(np.mean([t.compile_seconds for t in probed.values()]))
  per_param = float(np.mean([t.member_epoch_seconds / max(buckets[i].param_count, 1)
                             for i, t in probed.items()]))
  times = [probed.get(i) or BucketTime(b.spec.name(), mean_compile,
                                       per_param * max(b.param_count, 1),
                                       sum(int(m.trial.epochs) for m in b.members))
           for i, b in enumerate(buckets)]
  planned = sum(t.member_epochs for t in times) or 1
  compile_s = sum(t.compile_seconds for t in times)
  train_planned = sum(t.member_epoch_seconds * t.member_epochs for t in times)
  # Members asked later (bayes batches, ...) are taken to cost what the first ask costs.
  train_s = train_planned * total_member_epochs / planned
  line = (f"estimate: {'' if exact else 'at least '}{_fmt(compile_s + train_s)} "
          f"(compile {_fmt(compile_s)} for {len(times)} programs, train {_fmt(train_s)} for "
          f"{total_member_epochs} member-epochs; probed {len(probed)} of {len(times)} buckets, "
          f"{PROBE_STEPS} batches each; test evaluation and checkpoints not included)")
  return times, line


def _fmt(seconds: float) -> str:
  seconds = float(seconds)
  if seconds < 120:
    return f"{seconds:.1f} s"
  if seconds < 7200:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


def time_line(summary: dict[str, Any] | None, *, total_seconds: float,
              checkpoint_seconds: float) -> str:
  """The final line's split of the sweep's time. `summary` is WORKDIR/summary.json when the
  loop wrote one (programs_compiled, compile_seconds, train_seconds, checkpoint_seconds; and
  compile_overlapped_seconds, compiles that ran beside training and so are not in the split)."""
  summary = summary or {}
  parts = []
  if "compile_seconds" in summary:
    compiled = summary.get("programs_compiled")
    overlapped = summary.get("compile_overlapped_seconds") or 0.0
    notes = ([f"{compiled} programs"] if compiled is not None else []) + (
        [f"{overlapped:.1f} s more overlapped with training"] if overlapped >= 0.05 else [])
    parts.append(f"compile {summary['compile_seconds']:.1f} s"
                 + (f" ({'; '.join(notes)})" if notes else ""))
  if "train_seconds" in summary:
    parts.append(f"train {summary['train_seconds']:.1f} s")
  parts.append(f"checkpoint {summary.get('checkpoint_seconds', checkpoint_seconds):.1f} s")
  accounted = sum(float(summary.get(k, 0.0)) for k in ("compile_seconds", "train_seconds"))
  accounted += float(summary.get("checkpoint_seconds", checkpoint_seconds))
  parts.append(f"other {max(total_seconds - accounted, 0.0):.1f} s")
  return f"time: {total_seconds:.1f} s = " + " + ".join(parts)
