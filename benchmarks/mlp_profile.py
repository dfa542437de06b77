"""Where a packed MLP training epoch spends its time on the CPU: the same epoch with one part
removed at a time, timed side by side in one process (steady state, compiles excluded).

    python benchmarks/mlp_profile.py                        # the seed space's largest config
    python benchmarks/mlp_profile.py --widths=512,2048,512,512,2048 --activation=tanh

Each variant removes one part by patching the library for that variant only (the numbers are
then wrong: this is a profile, not a training run):
  full:       population.train_epoch as a sweep runs it;
  no_dropout: dropout masks not drawn (identity);
  no_guard:   no keep-the-old-parameters select after each step (the optimizer still gates
              its own state), no overflow check per epoch;
  no_clip:    no global-norm clipping (its norm, also the step's finiteness check, is kept);
  sgd:        plain SGD instead of Adam (the optimizer's elementwise passes);
  no_eval:    the validation pass skipped;
  matmuls:    a hand-written step with the same matmuls (forward + backward) and nothing else.
Prints ms per training step and each variant's share of `full`.

    python benchmarks/mlp_profile.py --breakdown            # per-op times, grouped

`--breakdown` instead traces one epoch of `full` with jax.profiler and sums XLA's per-op times
(both compute threads) by what each op computes, read from the compiled program: matmuls
(forward, backward, evaluation), parameter-sized elementwise passes (optimizer, L2, selects),
parameter-sized reductions (the gradient norm), parameter-sized copies, bias-sized ops, random
bits, and everything else (activations, dropout masks, loss, data gather). Op time is CPU time
of the ops, not wall time: only the shares compare across loads.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

import jaxnn
from jaxnn import member, optim, population
from jaxnn.data import Dataset, Split
from jaxnn.models import mlp

FLAGS = flags.FLAGS
flags.DEFINE_list("widths", ["1024", "2048", "256", "1024", "2048"], "Hidden widths.")
flags.DEFINE_string("activation", "gelu", "Activation.")
flags.DEFINE_float("dropout", 0.3, "Dropout rate.")
flags.DEFINE_integer("examples", 4096, "Training examples (32x32x3).")
flags.DEFINE_integer("val_examples", 2000, "Validation examples.")
flags.DEFINE_integer("repeats", 3, "Timed epochs per variant (alternating rounds).")
flags.DEFINE_list("variants", ["full", "no_dropout", "no_guard", "no_clip", "sgd", "no_eval",
                               "matmuls"], "Variants to time.")
flags.DEFINE_bool("breakdown", False, "Per-op times of one epoch of `full`, grouped.")


def _dataset(n, n_val):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, size=(n + n_val, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(0, 10, size=n + n_val).astype(np.int32)
  return Dataset("synthetic", Split(x[:n], y[:n]), Split(x[n:], y[n:]), Split(x[n:], y[n:]), 10,
                 tuple(map(str, range(10))), np.full(3, 127.5, np.float32),
                 np.full(3, 64.0, np.float32))


@contextlib.contextmanager
def _patched(obj, name, value):
  old = getattr(obj, name)
  setattr(obj, name, value)
  try:
    yield
  finally:
    setattr(obj, name, old)


def _variant_context(name):
  stack = contextlib.ExitStack()
  if name == "no_dropout":
    stack.enter_context(_patched(mlp, "unit_dropout", lambda key, x, rate, width: x))
  if name == "no_guard":
    stack.enter_context(_patched(population, "_keep_where", lambda ok, new, old: new))
    stack.enter_context(_patched(population, "_tree_finite", lambda tree: jnp.array(True)))
  if name == "no_clip":
    import optax
    stack.enter_context(_patched(optim, "clip_by_global_norm",
                                 lambda n, norm=None: optax.identity()))
  if name == "no_eval":
    stack.enter_context(_patched(population, "_evaluate", lambda spec, state, hp, *a, **k: (
        jnp.zeros(state.step.shape), jnp.zeros(state.step.shape))))
  return stack


def _matmul_step(widths, n_in=3072, classes=10, batch=128):
  shapes = list(zip([n_in] + widths, widths + [classes]))
  ws = [jnp.full(s, 1e-3, jnp.float32) for s in shapes]
  x = jnp.ones((batch, n_in), jnp.float32)

  def loss(ws, x):
    for w in ws[:-1]:
      x = jnp.maximum(x @ w, 0)
    return jnp.sum(x @ ws[-1])

  @jax.jit
  def step(ws, x):
    g = jax.grad(loss)(ws, x)
    return [w - 1e-9 * gw for w, gw in zip(ws, g)]

  return step, ws, x


def _categories(compiled_text: str, param_shapes: set[str]) -> dict[str, str]:
  """op name -> what it computes, from the optimized HLO text."""
  bodies, current = {}, None
  for line in compiled_text.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if head:
      current = bodies.setdefault(head.group(1), [])
    elif current is not None:
      current.append(line)
  ops = {}
  for line in compiled_text.splitlines():
    op = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", line)
    if not op:
      continue
    name, shape, kind = op.groups()
    called = re.search(r"calls=%([\w.\-]+)", line)
    body = "\n".join(bodies.get(called.group(1), [])) if called else ""
    shape = re.sub(r"\{.*?\}", "", shape)
    dims = (re.findall(r"\[(.*?)\]", shape) or [""])[0]
    dims = dims[2:] if dims.startswith("1,") else dims   # one member: a leading axis of 1
    if kind == "dot" or " dot(" in body:
      ops[name] = "matmul"
    elif shape.startswith("f32[1]") and (" reduce(" in body or "ynn" in name):
      ops[name] = "parameter-sized reduction (gradient norm)"
    elif dims in param_shapes and "," in dims:
      ops[name] = ("parameter-sized copy" if kind == "copy"
                   else "parameter-sized elementwise (optimizer, L2, selects)")
    elif dims in param_shapes:
      ops[name] = "bias-sized"
    elif "u32" in shape:
      ops[name] = "random bits"
    else:
      ops[name] = "other (activations, dropout masks, loss, data)"
  return ops


def breakdown(spec, hp, data, steps):
  """Prints one epoch's per-op times grouped by `_categories`, in ms per training step."""
  from jax.profiler import ProfileData  # noqa: PLC0415
  state = population.init(spec, hp, data)
  state, metrics = population.train_epoch(spec, state, hp, data)
  jax.block_until_ready(metrics)
  params = {",".join(map(str, leaf.shape[1:])) for leaf in jax.tree_util.tree_leaves(state.params)}
  ops = _categories(population.train_epoch.lower(spec, state, hp, data).compile().as_text(),
                    params)
  with tempfile.TemporaryDirectory() as folder:
    start = time.perf_counter()
    with jax.profiler.trace(folder):
      state, metrics = population.train_epoch(spec, state, hp, data)
      jax.block_until_ready(metrics)
    wall = time.perf_counter() - start
    profile = ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
    totals = collections.Counter()
    for plane in profile.planes:
      for line in plane.lines:
        for event in line.events:
          if event.name in ops:
            totals[ops[event.name]] += event.duration_ns
  total = sum(totals.values())
  print(f"one epoch: {steps} steps + evaluation, {1e3 * wall / steps:.1f} ms/step wall "
        f"(traced); op time {total / 1e6 / steps:.1f} ms/step")
  for name, ns in totals.most_common():
    print(f"  {name:52s} {ns / 1e6 / steps:8.1f} ms/step {100 * ns / total:5.1f}%")


def main(argv):
  del argv
  jaxnn.configure()
  widths = [int(w) for w in FLAGS.widths]
  config = dict(model="mlp", widths=widths, activation=FLAGS.activation, l2=1e-4,
                dropout=FLAGS.dropout, optimizer="adam", lr=1e-3, batch_size=128, epochs=1)
  dataset = _dataset(FLAGS.examples, FLAGS.val_examples)
  data = population.device_data(dataset)
  steps = FLAGS.examples // 128
  if FLAGS.breakdown:
    spec, row = member.resolve(config, num_classes=10)
    breakdown(spec, jax.tree_util.tree_map(jnp.asarray, population.stack_rows([row], [0])),
              data, steps)
    return
  runners = {}
  for name in FLAGS.variants:
    if name == "matmuls":
      step, ws, x = _matmul_step(widths)
      state = {"ws": step(ws, x)}

      def run(step=step, x=x, state=state):
        for _ in range(steps):
          state["ws"] = step(state["ws"], x)
        jax.block_until_ready(state["ws"])
      runners[name] = run
      continue
    cfg = dict(config, optimizer="sgd") if name == "sgd" else config
    spec, row = member.resolve(cfg, num_classes=10)
    hp = jax.tree_util.tree_map(jnp.asarray, population.stack_rows([row], [0]))
    # A distinct spec per variant (eval_batch_size differs by a unit) keeps programs apart.
    import dataclasses
    spec = dataclasses.replace(spec, eval_batch_size=1000 + len(runners))
    holder = {"state": population.init(spec, hp, data)}

    def run(spec=spec, hp=hp, holder=holder, name=name):
      with _variant_context(name):
        holder["state"], metrics = population.train_epoch(spec, holder["state"], hp, data)
      jax.block_until_ready(metrics)
    start = time.perf_counter()
    run()
    print(f"{name:10s} compile+first epoch {time.perf_counter() - start:6.1f} s", flush=True)
    runners[name] = run
  runners["matmuls"]() if "matmuls" in runners else None
  times = {name: [] for name in runners}
  for _ in range(FLAGS.repeats):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  full = min(times["full"]) if "full" in times else None
  for name, ts in times.items():
    best = min(ts)
    share = f"{best / full:5.2f} of full" if full else ""
    print(f"{name:10s} {1e3 * best / steps:8.2f} ms/step  {share}")


if __name__ == "__main__":
  app.run(main)
