"""A population: many members of one bucket trained side by side as one compiled program.

The program is written for ONE member (`_member_epoch`: an epoch of lax.scan over batches of
device-resident data, then an evaluation on the validation split) and vectorized over members
with jax.vmap. Three rules make "a member in a population == the same config trained alone":

  * every number that differs between members (lr, momentum, dropout, seed, ...) is an array
    leaf of `hparams`, one row per member, never a Python constant: new values reuse the program;
  * every random draw derives from the member's own (seed, member_id) by fold_in, never from its
    position in the bucket or the bucket's size;
  * members never interact: data are shared read-only (not copied per member), the batch of each
    member is gathered by its own permutation.

A member whose loss or gradients become non-finite is frozen at its last finite state (that
update is skipped) and flagged `diverged`, as is one whose parameters overflow in an update; a
member whose `active` flag is cleared (early stopping, end of its epochs) stops updating.
Neither changes the numbers of the others.

Metrics leave the device once per epoch at most: `train_epoch` returns arrays [members].
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import threading
import time
from typing import Any, Mapping, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import data as data_lib
from jaxnn import initializers, losses, models, optim, schedules
from jaxnn import member as member_lib
from jaxnn.member import BucketSpec

Hparams = Mapping[str, jax.Array]

# Counts how often each population function is traced (i.e. compiled): tests use it to prove
# that new hyperparameter values or seeds reuse the compiled program.
TRACE_COUNTS: collections.Counter = collections.Counter()
_TRACE_LOCK = threading.Lock()   # a sweep may trace on its compile-ahead thread too


def _traced(name: str) -> None:
  """Counts one trace of `name` (under a lock: `+=` on a Counter is not atomic across threads)."""
  with _TRACE_LOCK:
    TRACE_COUNTS[name] += 1

# fold_in tags, one per purpose, so no two uses ever share a key.
_INIT, _SHUFFLE, _DROPOUT, _AUGMENT = range(4)


class MemberState(flax.struct.PyTreeNode):
  """One member's training state; in a population every leaf has a leading [members] axis."""
  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array       # optimizer steps taken (int32)
  epoch: jax.Array      # epochs started (int32); drives the data permutation
  active: jax.Array     # bool: still updating
  diverged: jax.Array   # bool: loss, gradients or params became non-finite (frozen)


class DeviceData(NamedTuple):
  """The splits the program reads, placed on the device once and shared by every member."""
  train_x: jax.Array
  train_y: jax.Array
  val_x: jax.Array
  val_y: jax.Array
  mean: jax.Array
  std: jax.Array


def device_data(dataset: "data_lib.Dataset") -> DeviceData:
  """Puts the train and validation splits on the device (images stay uint8)."""
  return DeviceData(
      train_x=jnp.asarray(dataset.train.x), train_y=jnp.asarray(dataset.train.y, jnp.int32),
      val_x=jnp.asarray(dataset.val.x), val_y=jnp.asarray(dataset.val.y, jnp.int32),
      mean=jnp.asarray(dataset.mean, jnp.float32), std=jnp.asarray(dataset.std, jnp.float32))


def stack_rows(rows: Sequence[Mapping[str, Any]], member_ids: Sequence[int]) -> dict[str, np.ndarray]:
  """Stacks the numeric rows of `member.resolve` into per-member arrays (host numpy).

  Floats become float32 [M] (or [M, k] for vector fields); `seed` and `member_id` int32 [M].
  `epochs` is the driver's business and is left out.
  """
  if len(rows) != len(member_ids):
    raise ValueError(f"member_ids: {len(member_ids)} ids for {len(rows)} rows")
  keys = sorted(k for k in rows[0] if k != "epochs")
  out = {}
  for key in keys:
    dtype = np.int32 if key == "seed" else np.float32
    out[key] = np.asarray([row[key] for row in rows], dtype)
  out["member_id"] = np.asarray(member_ids, np.int32)
  return out


DTYPES = ("float32", "bfloat16")


def with_dtype(spec: BucketSpec, dtype: str = "float32") -> BucketSpec:
  """The bucket computing in `dtype`: activations and matmuls/convs in that type, parameters and
  optimizer state stay float32 (the models' param_dtype), losses are taken in float32.

  float32 returns `spec` unchanged, so float32 sweeps keep their programs and checkpoints."""
  if dtype not in DTYPES:
    raise ValueError(f"dtype: unknown {dtype!r}; known: {', '.join(DTYPES)}")
  if dtype == "float32":
    return spec
  kwargs = tuple(sorted({**dict(spec.model_kwargs), "dtype": dtype}.items()))
  return dataclasses.replace(spec, model_kwargs=kwargs)


@functools.lru_cache(maxsize=None)
def _model(spec: BucketSpec):
  return spec.build_model()


def steps_per_epoch(spec: BucketSpec, num_train: int) -> int:
  """Full batches per epoch (see `member.steps_per_epoch`)."""
  return member_lib.steps_per_epoch(spec.batch_size, num_train)


def _member_key(hp: Hparams) -> jax.Array:
  return jax.random.fold_in(jax.random.key(hp["seed"]), hp["member_id"])


# What a model reads of a member's row (widths and act_index: a packed MLP's true shape).
MODEL_KEYS = ("dropout", "act_param", "widths", "act_index")


def _model_hparams(hp: Hparams) -> dict[str, jax.Array]:
  return {k: hp[k] for k in MODEL_KEYS if k in hp}


def _l2_per_leaf(spec: BucketSpec, hp: Hparams):
  if jnp.ndim(hp["l2"]) != 1:
    return None
  model = _model(spec)   # one L2 per layer (MLP rows): the model maps layers to leaves
  return lambda params: model.per_layer(params, hp["l2"])


def _optimizer(spec: BucketSpec, hp: Hparams, num_train: int,
               grad_norm: jax.Array | None = None, gate: jax.Array | None = None
               ) -> optax.GradientTransformation:
  return optim.make_optimizer(
      spec.optimizer, hp, schedule=spec.schedule, schedule_per=spec.schedule_per,
      steps_per_epoch=steps_per_epoch(spec, num_train), regularize_biases=spec.regularize_biases,
      l2_per_leaf=_l2_per_leaf(spec, hp), grad_norm=grad_norm, gate=gate)


def _regularized(spec: BucketSpec, hp: Hparams, grads, params):
  """(the gradient with the member's L1/L2 penalty added, its global norm): computed once in the
  step, checked for finiteness there and handed to the optimizer (`grad_norm`), whose clip
  uses the norm and whose chain then skips its own penalty link."""
  regularize = optim.regularizer(hp, regularize_biases=spec.regularize_biases,
                                 l2_per_leaf=_l2_per_leaf(spec, hp))
  return optim.regularized(regularize, grads, params)


def _tree_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


_keep_where = optim.keep_where


# ---------------------------------------------------------------- one member, written plainly

def _member_init(spec: BucketSpec, sample_x: jax.Array, num_train: int, hp: Hparams) -> MemberState:
  model = _model(spec)
  key = jax.random.fold_in(_member_key(hp), _INIT)
  params_key, dropout_key = jax.random.split(key)
  variables = model.init({"params": params_key, "dropout": dropout_key}, sample_x, train=False,
                         hparams=_model_hparams(hp))
  params = initializers.rescale(variables["params"], hp["init_scale"], hp["bias_value"])
  return MemberState(
      params=params, batch_stats=variables.get("batch_stats", {}),
      opt_state=_optimizer(spec, hp, num_train).init(params),
      step=jnp.int32(0), epoch=jnp.int32(0), active=jnp.array(True), diverged=jnp.array(False))


def _forward(spec, state_params, batch_stats, x, hp, *, train, key=None):
  model = _model(spec)
  variables = {"params": state_params}
  if jax.tree_util.tree_leaves(batch_stats):
    variables["batch_stats"] = batch_stats
  if not train:
    return model.apply(variables, x, train=False, hparams=_model_hparams(hp)), batch_stats
  out, updates = model.apply(variables, x, train=True, hparams=_model_hparams(hp),
                             rngs={"dropout": key}, mutable=["batch_stats"])
  return out, updates.get("batch_stats", batch_stats)


def _per_example_loss(spec, outputs, labels, hp, *, train=True):
  """The training loss (with the member's label smoothing) or, for evaluation, the plain loss:
  smoothing is a training regularizer, and a validation loss that includes it would rank and
  early-stop members with different smoothing on different scales."""
  smoothing = hp["label_smoothing"] if train else 0.0
  return losses.get_loss(spec.loss)(outputs, labels, label_smoothing=smoothing,
                                    huber_delta=hp["huber_delta"])


def _member_keys(spec: BucketSpec, hp: Hparams):
  member = _member_key(hp)
  # 'shared' shuffling: every member with the same seed sees the same batches.
  shuffle_base = member if spec.shuffle == "member" else jax.random.key(hp["seed"])
  return (jax.random.fold_in(shuffle_base, _SHUFFLE), jax.random.fold_in(member, _DROPOUT),
          jax.random.fold_in(member, _AUGMENT))


def _member_order(spec: BucketSpec, num_train: int, hp: Hparams, state: MemberState):
  """This member's batches for its current epoch: indices [steps, batch] of a permutation drawn
  from (seed, member_id, epoch)."""
  steps = steps_per_epoch(spec, num_train)
  batch = min(spec.batch_size, num_train)
  shuffle_key, _, _ = _member_keys(spec, hp)
  order = jax.random.permutation(jax.random.fold_in(shuffle_key, state.epoch), num_train)
  return order[: steps * batch].reshape(steps, batch)


def _member_steps(spec: BucketSpec, data: DeviceData, hp: Hparams, state: MemberState, order,
                  unroll: int = 1):
  """Training steps over the batches `order` [steps, batch] for one member.

  Returns (state, (loss [steps], accuracy [steps])). `unroll` is scan's: how many steps one
  loop iteration holds (XLA:CPU runs convolutions inside a loop body far slower; see
  `run_epoch`); it changes the program, never the numbers' meaning.
  """
  num_train = data.train_x.shape[0]
  _, dropout_key, augment_key = _member_keys(spec, hp)

  def train_step(state: MemberState, indices):
    x = data_lib.normalize(data.train_x[indices], data.mean, data.std)
    if spec.augments:
      x = data_lib.augment(jax.random.fold_in(augment_key, state.step), x,
                           crop_padding=spec.crop_padding, pad_mode=spec.pad_mode,
                           flip=spec.flip, cutout=spec.cutout)
    y = data.train_y[indices]

    def loss_fn(params):
      out, batch_stats = _forward(spec, params, state.batch_stats, x, hp, train=True,
                                  key=jax.random.fold_in(dropout_key, state.step))
      return _per_example_loss(spec, out, y, hp).mean(), (out, batch_stats)

    (loss, (out, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    # Checked BEFORE the update, from two scalars: the keep-or-skip select then fuses into the
    # optimizer's one elementwise pass. Checking the new parameters first costs a read of them
    # and a select pass over parameters and optimizer state (measured ~18% of a seed-space
    # CIFAR MLP step on the CPU). The norm is the regularized gradient's, the one the clip
    # takes anyway (one penalty pass, one reduction for both); one that overflows float32
    # counts as non-finite (the clip would turn it into NaN updates anyway).
    grads, grad_norm = _regularized(spec, hp, grads, state.params)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    ok = state.active & finite
    # The optimizer keeps its own state where `ok` is False (`gate`): a select over its state
    # here made XLA recompute Adam's moments from copies of the old ones.
    tx = _optimizer(spec, hp, num_train, grad_norm, gate=ok)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new = state.replace(
        params=_keep_where(ok, optax.apply_updates(state.params, updates), state.params),
        batch_stats=_keep_where(ok, batch_stats, state.batch_stats),
        opt_state=opt_state,
        step=state.step + ok.astype(jnp.int32),
        active=ok,
        diverged=state.diverged | (state.active & ~finite))
    accuracy = losses.accuracy(spec.loss, out, y).mean()
    return new, (loss, accuracy)

  if order.shape[0] == 1 or unroll >= order.shape[0]:   # straight-line code, no loop at all
    outs = []
    for i in range(order.shape[0]):
      state, out = train_step(state, order[i])
      outs.append(out)
    state, outs = state, tuple(jnp.stack(v) for v in zip(*outs))
  else:
    state, outs = jax.lax.scan(train_step, state, order, unroll=unroll)
  return _stop_overflowed(state), outs


def _stop_overflowed(state: MemberState) -> MemberState:
  """Flags and stops a member whose parameters overflowed (|p + u| > float32's max) in a finite
  update. Checked once per run of steps (an epoch, or a block), not after every step: it is a
  pass over every parameter (~6% of a seed-space CIFAR MLP step on the CPU, and one compiled
  kernel per leaf). In between, an overflowed parameter makes the next step's loss non-finite
  (inf times anything, zero included, is inf or NaN in a matmul), which skips that update and
  flags the member, so it is frozen at the overflowed state exactly as a per-step check froze
  it; the check here catches the rest (a saturated unit that hides it) by the epoch's end."""
  overflow = state.active & ~_tree_finite(state.params)
  return state.replace(active=state.active & ~overflow, diverged=state.diverged | overflow)


def _member_train(spec: BucketSpec, data: DeviceData, hp: Hparams, state: MemberState,
                  unroll: int = 1):
  """One epoch of training for one member. Returns (state, (mean train loss, mean train acc))."""
  order = _member_order(spec, data.train_x.shape[0], hp, state)
  state, (step_losses, step_accs) = _member_steps(spec, data, hp, state, order, unroll)
  return state.replace(epoch=state.epoch + 1), (step_losses.mean(), step_accs.mean())


def _member_evaluate(spec: BucketSpec, x_chunks, y_chunks, mask_chunks, mean, std, hp: Hparams,
                     params, batch_stats, loop: bool = True):
  """Mean loss and accuracy over the unmasked examples, chunk by chunk (bounded memory);
  `loop=False` writes the chunks out as straight-line code (for XLA:CPU, see `run_epoch`)."""

  def chunk(totals, inputs):
    x, y, mask = inputs
    out, _ = _forward(spec, params, batch_stats, data_lib.normalize(x, mean, std), hp, train=False)
    loss = _per_example_loss(spec, out, y, hp, train=False)
    correct = losses.accuracy(spec.loss, out, y)
    return (totals[0] + jnp.sum(jnp.where(mask, loss, 0.0)),
            totals[1] + jnp.sum(jnp.where(mask, correct, 0.0))), None

  totals = (jnp.float32(0), jnp.float32(0))
  if loop:
    (loss_sum, correct_sum), _ = jax.lax.scan(chunk, totals, (x_chunks, y_chunks, mask_chunks))
  else:
    for i in range(x_chunks.shape[0]):
      totals, _ = chunk(totals, (x_chunks[i], y_chunks[i], mask_chunks[i]))
    loss_sum, correct_sum = totals
  count = jnp.sum(mask_chunks)
  return loss_sum / count, correct_sum / count


def _chunked(spec: BucketSpec, x: jax.Array, y: jax.Array):
  """Pads an eval split to whole chunks of eval_batch_size, with a mask for the padding."""
  n = x.shape[0]
  size = max(min(spec.eval_batch_size, n), 1)   # an empty split (retraining on train+val):
                                                # zero chunks, metrics NaN
  chunks = -(-n // size)
  pad = chunks * size - n
  mask = jnp.arange(chunks * size) < n
  x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  y = jnp.pad(y, [(0, pad)] + [(0, 0)] * (y.ndim - 1))
  return (x.reshape((chunks, size) + x.shape[1:]), y.reshape((chunks, size) + y.shape[1:]),
          mask.reshape(chunks, size))


# ------------------------------------------------------------- the population: vmap over members

@functools.partial(jax.jit, static_argnames=("spec",))
def init(spec: BucketSpec, hparams: Hparams, data: DeviceData) -> MemberState:
  """Initializes every member of a bucket (params, batch stats, optimizer state).

  Args:
    spec: the bucket (static).
    hparams: per-member arrays from `stack_rows` (all leaves have a leading [members] axis).
    data: the device data (only shapes and the sample input are read).
  """
  _traced("init")
  sample = data_lib.normalize(data.train_x[:1], data.mean, data.std)
  member_init = functools.partial(_member_init, spec, sample, data.train_x.shape[0])
  return jax.vmap(member_init)(hparams)


VECTORIZE = ("vmap", "map")


def over_members(fn, vectorize: str = "vmap", loop: bool = True):
  """Maps a one-member function over the leading members axis of its arguments.

  'vmap' batches the members into one computation (best for matmul-bound models); 'map' runs
  them one after another inside the same compiled program (lax.map), which can win for
  convolutions, where vmap turns each conv into a grouped conv. With `loop=False`, 'map' writes
  the members out one after another as straight-line code instead of a loop (XLA:CPU runs
  convolutions inside a loop body far slower); a population of one is then the member's own
  program.
  """
  if vectorize == "vmap":
    return jax.vmap(fn)
  if vectorize == "map" and loop:
    return lambda *args: jax.lax.map(lambda a: fn(*a), args)
  if vectorize == "map":
    def unrolled(*args):
      count = jax.tree_util.tree_leaves(args)[0].shape[0]
      outs = [fn(*jax.tree_util.tree_map(lambda a, i=i: a[i], args)) for i in range(count)]
      return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
    return unrolled
  raise ValueError(f"vectorize: unknown {vectorize!r}; known: {', '.join(VECTORIZE)}")


def _lr_now(spec: BucketSpec, hparams: Hparams, step: jax.Array, num_train: int) -> jax.Array:
  def lr_now(hp, step):
    return schedules.learning_rate_fn(
        spec.schedule, hp, per=spec.schedule_per,
        steps_per_epoch=steps_per_epoch(spec, num_train))(step)
  return jax.vmap(lr_now)(hparams, step)


@functools.partial(jax.jit, static_argnames=("spec", "vectorize", "unroll"),
                   donate_argnames=("state",))
def train_epoch(spec: BucketSpec, state: MemberState, hparams: Hparams, data: DeviceData,
                vectorize: str = "vmap", unroll: int = 1):
  """Trains every member for one epoch, then evaluates it on the validation split.

  The whole epoch is one program (a lax.scan over batches): the right shape for accelerators.
  On XLA:CPU see `run_epoch`, which may drive the same steps in blocks from Python instead.

  Returns:
    (state, metrics): metrics maps train_loss, train_acc, val_loss, val_acc, lr to arrays
    [members]; lr is the rate used during this epoch (at its first step).
  """
  _traced("train_epoch")
  lr = _lr_now(spec, hparams, state.step, data.train_x.shape[0])
  state, (train_loss, train_acc) = over_members(
      functools.partial(_member_train, spec, data, unroll=unroll), vectorize)(hparams, state)
  val_loss, val_acc = _evaluate(spec, state, hparams, data.val_x, data.val_y, data.mean, data.std,
                                vectorize)
  return state, {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                 "val_acc": val_acc, "lr": lr}


# The same program without donating `state`: after a failed call (an allocation failure) the
# input state is intact, so the sweep loop can split the population and retry from it. The
# planner budgets the old and the new state side by side, so this uses no memory it does not
# count; `train_epoch` (donating) stays for drivers that never retry.
train_epoch_retryable = jax.jit(train_epoch.__wrapped__, static_argnames=("spec", "vectorize"))


# ------------------------------------------- the same epoch, driven in blocks of steps from Python

@functools.partial(jax.jit, static_argnames=("spec", "num_train"))
def epoch_order(spec: BucketSpec, state: MemberState, hparams: Hparams, num_train: int):
  """Every member's batches for its current epoch (indices [members, steps, batch]) and the
  learning rate [members] at the epoch's first step."""
  _traced("epoch_order")
  order = jax.vmap(functools.partial(_member_order, spec, num_train))(hparams, state)
  return order, _lr_now(spec, hparams, state.step, num_train)


@functools.partial(jax.jit, static_argnames=("spec", "vectorize"), donate_argnames=("state",))
def train_block(spec: BucketSpec, state: MemberState, hparams: Hparams, data: DeviceData,
                order: jax.Array, vectorize: str = "vmap"):
  """A block of training steps for every member, unrolled (no loop in the program).

  Args:
    order: [members, k, batch] batch indices (a slice of `epoch_order`).
  Returns:
    (state, (loss [members, k], accuracy [members, k])).
  """
  _traced("train_block")
  steps = functools.partial(_member_steps, spec, data, unroll=order.shape[1])
  return over_members(steps, vectorize, loop=False)(hparams, state, order)


@functools.partial(jax.jit, static_argnames=("spec", "vectorize"), donate_argnames=("state",))
def finish_epoch(spec: BucketSpec, state: MemberState, hparams: Hparams, data: DeviceData,
                 step_losses: jax.Array, step_accs: jax.Array, lr: jax.Array,
                 vectorize: str = "vmap"):
  """Ends a blocked epoch: counts it, evaluates, and gives `train_epoch`'s metrics."""
  _traced("finish_epoch")
  state = state.replace(epoch=state.epoch + 1)
  val_loss, val_acc = _evaluate(spec, state, hparams, data.val_x, data.val_y, data.mean, data.std,
                                vectorize, loop=False)
  return state, {"train_loss": step_losses.mean(axis=1), "train_acc": step_accs.mean(axis=1),
                 "val_loss": val_loss, "val_acc": val_acc, "lr": lr}


# Steps per jitted call for convolutional buckets on XLA:CPU. Measured (2-core CPU shared with
# ~16 other busy processes, small_cnn, 1 member, 16 steps of batch 128; first epoch with compile
# / next epoch): one scan 41 / 36 s; blocks of 1: 17 / 7.3 s, 2: 29 / 6.7 s, 4: 33 / 6.1 s,
# 8: 42 / 6.4 s. Longer blocks compile much longer for little gain.
CPU_CONV_BLOCK = 2


def default_block(spec: BucketSpec, backend: str | None = None) -> int | None:
  """How `run_epoch` should drive a bucket's epoch on a backend: None (one program, a scan) on
  accelerators and for MLPs; `CPU_CONV_BLOCK` steps per call for convolutional models on the
  CPU, where a conv inside a loop body runs 6-18x slower than in straight-line code."""
  backend = backend or jax.default_backend()
  convolutional = models.model_entry(spec.model).convolutional
  return CPU_CONV_BLOCK if backend == "cpu" and convolutional else None


def run_epoch(spec: BucketSpec, state: MemberState, hparams: Hparams, data: DeviceData,
              vectorize: str = "vmap", block: int | None = None, retryable: bool = False):
  """One epoch for every member, as one program (`block=None`) or in blocks of `block` steps.

  Both give `train_epoch`'s (state, metrics). Blocks exist for XLA:CPU, which runs convolution
  training steps inside a loop body 6-18x slower than the same steps as straight-line code: a
  block is `block` unrolled steps, one jitted call each, issued from Python without a host sync
  (dispatch is asynchronous). The last block may be shorter (one more compile, once). With
  'map', the members' epochs are issued one after another from Python, each with the program of
  a population of one: one compile whatever the chunk's size, the same program as a solo run.
  `retryable`: the input `state` is never donated (see `train_epoch_retryable`).
  """
  if block is None:
    epoch = train_epoch_retryable if retryable else train_epoch
    return epoch(spec, state, hparams, data, vectorize=vectorize)
  count = state.step.shape[0]
  if vectorize == "map" and count > 1:
    parts = [run_epoch(spec, _rows(state, i), _rows(hparams, i), data, "map", block)
             for i in range(count)]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)
  order, lr = epoch_order(spec, state, hparams, data.train_x.shape[0])
  outs = []
  for start in range(0, order.shape[1], block):
    step = train_block_retryable if retryable and start == 0 else train_block
    state, out = step(spec, state, hparams, data, order[:, start:start + block],
                      vectorize=vectorize)
    outs.append(out)
  step_losses = jnp.concatenate([o[0] for o in outs], axis=1)
  step_accs = jnp.concatenate([o[1] for o in outs], axis=1)
  return finish_epoch(spec, state, hparams, data, step_losses, step_accs, lr, vectorize=vectorize)


train_block_retryable = jax.jit(train_block.__wrapped__, static_argnames=("spec", "vectorize"))


def _rows(tree, i: int):
  """Member i of a population as a population of one (a copy)."""
  return jax.tree_util.tree_map(lambda x: x[i:i + 1], tree)


def _evaluate(spec, state, hparams, x, y, mean, std, vectorize="vmap", loop=True):
  x_chunks, y_chunks, mask = _chunked(spec, x, y)
  member_eval = functools.partial(_member_evaluate, spec, x_chunks, y_chunks, mask, mean, std,
                                  loop=loop)
  return over_members(member_eval, vectorize, loop)(hparams, state.params, state.batch_stats)


@functools.partial(jax.jit, static_argnames=("spec",))
def evaluate(spec: BucketSpec, state: MemberState, hparams: Hparams, x: jax.Array, y: jax.Array,
             mean: jax.Array, std: jax.Array):
  """Loss and accuracy [members] of every member on any split (e.g. the held-out test split)."""
  _traced("evaluate")
  return _evaluate(spec, state, hparams, x, y, mean, std)


def set_active(state: MemberState, active: jax.Array) -> MemberState:
  """Stops (False) members from updating; a diverged member stays stopped."""
  return state.replace(active=jnp.asarray(active) & state.active)


def train(spec: BucketSpec, rows: Sequence[Mapping[str, Any]], member_ids: Sequence[int],
          data: DeviceData, epochs: int, vectorize: str = "vmap", block: int | None | str = "auto",
          ) -> tuple[MemberState, dict[str, np.ndarray]]:
  """Trains a bucket for `epochs` epochs; the simple driver for notebooks and benchmarks.

  `block`: steps per jitted call (see `run_epoch`); 'auto' is `default_block` for this backend.

  Returns:
    (final state, history): history maps each metric to a numpy array [members, epochs], plus
    `diverged` [members] (bool).
  """
  hparams = jax.tree_util.tree_map(jnp.asarray, stack_rows(rows, member_ids))
  state = init(spec, hparams, data)
  block = default_block(spec) if block == "auto" else block
  per_epoch = []
  for _ in range(epochs):
    state, metrics = run_epoch(spec, state, hparams, data, vectorize, block)
    per_epoch.append(metrics)  # stays on device; fetched once below
  history = jax.device_get(per_epoch)
  stacked = {k: np.stack([m[k] for m in history], axis=1) for k in history[0]} if history else {}
  stacked["diverged"] = np.asarray(state.diverged)
  return state, stacked


def compile_ahead(spec: BucketSpec, hparams: Hparams, data: DeviceData, vectorize: str = "vmap",
                  *, epoch: bool = True, retryable: bool = False,
                  executor: concurrent.futures.Executor | None = None,
                  ) -> concurrent.futures.Future:
  """Compiles, on a background thread, the programs a chunk with these stacked `hparams` will
  run: `init`, and (`epoch`, and where the epoch is one program: `default_block` None) its
  epoch program, `train_epoch_retryable` when `retryable`, else `train_epoch`.

  Why: a sweep of many buckets compiles one after another, each compile on one core while the
  other idles; issued for the next chunk while one trains, a compile overlaps training (the
  jit caches are process-wide: the same call with arguments of the same shapes, dtypes and
  placement then finds the programs compiled; tests/test_population.py pins that it traces
  nothing new). Wait for the future before the chunk's first call, or the program is
  compiled twice. The blocked CNN epochs on the CPU compile block by block as they run.

  Args:
    executor: where to run it (default: a new single-thread executor, shut down when done).
  Returns:
    A future whose result is the compile's wall seconds.
  """

  def work():
    start = time.perf_counter()
    lowered = init.lower(spec, hparams, data)
    lowered.compile()
    if epoch and default_block(spec) is None:
      program = train_epoch_retryable if retryable else train_epoch
      program.lower(spec, lowered.out_info, hparams, data, vectorize=vectorize).compile()
    return time.perf_counter() - start

  if executor is not None:
    return executor.submit(work)
  own = concurrent.futures.ThreadPoolExecutor(1)
  future = own.submit(work)
  own.shutdown(wait=False)
  return future


@functools.partial(jax.jit, static_argnames=("spec",))
def apply(spec: BucketSpec, params, batch_stats, hparams: Hparams, x: jax.Array, mean: jax.Array,
          std: jax.Array) -> jax.Array:
  """Logits of ONE member (unstacked params and hparams row) on raw inputs `x`, in eval mode:
  normalized exactly as in training and evaluation (what an exported model predicts with)."""
  out, _ = _forward(spec, params, batch_stats, data_lib.normalize(x, mean, std), hparams,
                    train=False)
  return out
