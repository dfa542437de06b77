"""A member's flat config, split into what shapes the program and what the program reads.

A member is described by one flat mapping of hyperparameters (what a search space samples, what
a record stores). `resolve` validates it and splits it in two:
  * a `BucketSpec`: everything that changes a shape or the compiled program (family, widths,
    activation, initializer kinds, optimizer and schedule kinds, loss, batch size, augmentation
    switches). Hashable: it is the static argument of the jitted population functions and the
    key that groups members into buckets.
  * a row of numbers: every numeric hyperparameter, present for every member (neutral values
    where unused) so the rows of a bucket stack into arrays with one pytree structure.

Every check runs here, before anything compiles, and fails with one line naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np

from jaxnn import activations, initializers, losses, models, optim, schedules
from jaxnn.data.augment import PAD_MODES  # noqa: F401  (checked by resolve)
from jaxnn.models import mlp as mlp_lib


class ConfigError(ValueError):
  """A config value that cannot be trained; the message is one line naming the field."""


# The static (program-shaping) fields with their defaults.
STATIC_DEFAULTS: dict[str, Any] = {
    "model": "mlp",
    "activation": None,   # None: the model family's own default
    "kernel_init": None,   # None: the model family's own default (see model_default)
    "bias_init": None,
    "batchnorm": None,
    "optimizer": "sgd",
    "schedule": "constant",
    "schedule_per": "epoch",
    "loss": "cross_entropy",
    "batch_size": 128,
    "regularize_biases": False,
    "crop_padding": 0,
    "pad_mode": "reflect",
    "flip": False,
    "cutout": 0,
    "shuffle": "member",
    "eval_batch_size": 1000,
}

# Numeric fields that are not the optimizer's (see optim.OPTIMIZER_HPARAMS) or a schedule's.
MODEL_HPARAMS: dict[str, float] = {
    "dropout": 0.0, "act_param": 0.0, "label_smoothing": 0.0, "huber_delta": 1.0,
    "init_scale": 1.0, "bias_value": 0.0,
}
SCHEDULE_DEFAULTS: dict[str, float] = {
    "gamma": 0.1, "step_size": 1.0, "lr_min": 0.0, "decay": 0.0, "horizon": 1.0, "warmup": 0.0,
    "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4,
}
# Fields that describe the member but are not part of the program: the driver reads them.
RUN_FIELDS: dict[str, Any] = {"seed": 0, "epochs": 1}

# Model options set through their own fields (activation, initializers, batchnorm have theirs).
_SHARED_MODEL_OPTIONS = ("num_classes", "activation", "kernel_init", "bias_init", "batchnorm", "dtype",
                         "head_width")


def model_option_fields() -> set[str]:
  """Every architecture option of every registered model (widths, depth, features, ...)."""
  return {o for name in models.list_models() for o in models.model_entry(name).options()
          if o not in _SHARED_MODEL_OPTIONS}
# PAD_MODES: defined once, by the augmentation that reads it (imported above).
SHUFFLES = ("member", "shared")


@dataclasses.dataclass(frozen=True)
class BucketSpec:
  """What the compiled program depends on. Members with equal specs share one program."""
  model: str
  model_kwargs: tuple[tuple[str, Any], ...]
  num_classes: int
  loss: str = "cross_entropy"
  optimizer: str = "sgd"
  schedule: str = "constant"
  schedule_per: str = "epoch"
  batch_size: int = 128
  regularize_biases: bool = False
  crop_padding: int = 0
  pad_mode: str = "reflect"
  flip: bool = False
  cutout: int = 0
  shuffle: str = "member"
  eval_batch_size: int = 1000
  num_milestones: int = 0

  def build_model(self):
    return models.get_model(self.model, num_classes=self.num_classes, **dict(self.model_kwargs))

  @property
  def augments(self) -> bool:
    return bool(self.crop_padding or self.flip or self.cutout)

  def name(self) -> str:
    """A short readable bucket name for logs and plans."""
    kwargs = ",".join(f"{k}={'/'.join(v) if k == 'activation' and isinstance(v, tuple) else _short(v)}"
                      for k, v in self.model_kwargs
                      if k not in ("kernel_init", "bias_init"))
    parts = [f"{self.model}({kwargs})",
             self.optimizer if isinstance(self.optimizer, str) else "/".join(self.optimizer)]
    if self.schedule != "constant":
      parts.append(self.schedule if isinstance(self.schedule, str) else "/".join(self.schedule))
    parts.append(f"bs{self.batch_size}")
    if self.augments:
      parts.append("aug")
    return " ".join(parts)


def _short(value):
  if isinstance(value, tuple):
    return "x".join(map(str, value))
  return str(value)


def _fail(field: str, value: Any, allowed: str) -> ConfigError:
  return ConfigError(f"{field}: got {value!r}; allowed: {allowed}")


def _number(cfg, field, *, low=None, high=None, low_open=False, high_open=False, allowed=None,
            vector=False):
  value = cfg[field]
  if isinstance(value, (list, tuple)) and not vector:
    raise _fail(field, value, allowed or _range_text(low, high, low_open, high_open))
  values = value if isinstance(value, (list, tuple)) else [value]
  for v in values:
    ok = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    ok = ok and not math.isnan(float(v))
    if ok and low is not None:
      ok = float(v) > low if low_open else float(v) >= low
    if ok and high is not None:
      ok = float(v) < high if high_open else float(v) <= high
    if not ok:
      raise _fail(field, value, allowed or _range_text(low, high, low_open, high_open))
  return value


def _range_text(low, high, low_open, high_open):
  left = "(" if low_open else "["
  right = ")" if high_open else "]"
  return f"a number in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def _choice(cfg, field, registry_or_choices):
  value = cfg[field]
  choices = list(registry_or_choices)
  if value not in choices:
    raise _fail(field, value, ", ".join(sorted(map(str, choices))))
  return value


def _bool(cfg, field):
  value = cfg[field]
  if not isinstance(value, (bool, np.bool_)):
    raise _fail(field, value, "true or false")
  return bool(value)


def _int(cfg, field, low):
  value = cfg[field]
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise _fail(field, value, f"an integer >= {low}")
  return int(value)


def known_fields() -> set[str]:
  return (set(STATIC_DEFAULTS) | set(MODEL_HPARAMS) | set(SCHEDULE_DEFAULTS)
          | set(optim.OPTIMIZER_HPARAMS) | set(RUN_FIELDS) | model_option_fields()
          | {"milestones"})


def steps_per_epoch(batch_size: int, num_train: int) -> int:
  """Full batches per epoch: the last partial batch is dropped (a fresh permutation each epoch
  means every example is still seen about equally often)."""
  return max(num_train // min(batch_size, num_train), 1)


def schedule_length_defaults(cfg: Mapping[str, Any], num_train: int | None) -> dict[str, float]:
  """Defaults of the schedule lengths, in the schedule's own unit (`schedule_per`).

  Per epoch: `horizon` is the member's epochs, `step_size` one epoch, `gamma` 0.1 per epoch.
  Per step the same curves in steps: `horizon` = epochs * steps per epoch, `step_size` = one
  epoch of steps and, for `exponential`, `gamma` = 0.1 ** (1 / steps per epoch), so a per-step
  schedule left at its defaults meets the per-epoch one at every epoch boundary (a horizon of
  1 step would take cosine, one_cycle and warmup_cosine to ~0 after the first step). Per-step
  defaults need the training set's size; without it (`num_train=None`) a per-step schedule
  that reads a length must set it.
  """
  if cfg.get("schedule_per", "epoch") == "epoch":
    return {"horizon": float(cfg["epochs"]), "step_size": 1.0, "gamma": 0.1}
  reads = set(schedules.SCHEDULE_HPARAMS.get(cfg.get("schedule"), ())) & {"horizon", "step_size"}
  if num_train is None:
    missing = sorted(f for f in reads if f not in cfg)
    if missing:
      raise ConfigError(f"{missing[0]}: schedule_per=step needs it in steps (its default is "
                        "derived from the training set size, unknown here)")
    return {"horizon": 1.0, "step_size": 1.0, "gamma": 0.1}
  batch = cfg["batch_size"]
  if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
    return {"horizon": 1.0, "step_size": 1.0, "gamma": 0.1}   # resolve refuses batch_size
  steps = steps_per_epoch(int(batch), max(int(num_train), 1))
  gamma = 0.1 ** (1.0 / steps) if cfg.get("schedule") == "exponential" else 0.1
  return {"horizon": float(cfg["epochs"] * steps), "step_size": float(steps), "gamma": gamma}


def with_defaults(config: Mapping[str, Any], num_train: int | None = None) -> dict[str, Any]:
  """Fills every field the config leaves out; defaults depend on the chosen kinds (and, for
  per-step schedule lengths, on `num_train`: see `schedule_length_defaults`)."""
  unknown = set(config) - known_fields()
  if unknown:
    raise ConfigError(f"{sorted(unknown)[0]}: unknown field; known: {', '.join(sorted(known_fields()))}")
  cfg = {**STATIC_DEFAULTS, **RUN_FIELDS, **config}
  _choice(cfg, "model", models.list_models())
  for field in ("kernel_init", "bias_init", "batchnorm", "activation"):
    if cfg[field] is None:
      cfg[field] = model_default(cfg["model"], field)
  optimizer = _choice(cfg, "optimizer", optim.OPTIMIZERS)
  kernel_init = _choice(cfg, "kernel_init", initializers.KERNEL_INITS)
  bias_init = _choice(cfg, "bias_init", initializers.BIAS_INITS)
  activation = _activations(cfg)[0]
  derived = {
      **optim.default_hparams(optimizer),
      **SCHEDULE_DEFAULTS,
      **MODEL_HPARAMS,
      "init_scale": initializers.default_kernel_scale(kernel_init),
      "bias_value": initializers.default_bias_value(bias_init),
      "act_param": activations.default_param(activation),
      **schedule_length_defaults(cfg, num_train),
  }
  return {**derived, **cfg}


def _activations(cfg) -> list[str]:
  """The activation names of a config: one name, or a per-layer list (MLP only)."""
  value = cfg["activation"]
  if isinstance(value, (list, tuple)):
    if not value or cfg["model"] != "mlp":
      raise _fail("activation", value, "one name (a per-layer list is for model mlp)"
                  if value else "one name or a non-empty list of names")
    for name in value:
      _choice({"activation": name}, "activation", activations.ACTIVATIONS)
    return list(value)
  _choice(cfg, "activation", activations.ACTIVATIONS)
  return [value]


def model_default(model: str, field: str) -> Any:
  """The default a model family gives one of its options (None if it has no such option)."""
  import functools
  factory = models.model_entry(model).factory
  while isinstance(factory, functools.partial):
    if field in factory.keywords:
      return factory.keywords[field]
    factory = factory.func
  for f in dataclasses.fields(factory):
    if f.name == field:
      return None if f.default is dataclasses.MISSING else f.default
  return None


def _model_kwargs(cfg) -> tuple[tuple[str, Any], ...]:
  options = set(models.model_entry(cfg["model"]).options())
  kwargs = {k: cfg[k] for k in model_option_fields() if k in cfg}
  for k in sorted(set(kwargs) - options):
    raise _fail(k, kwargs[k], f"not an option of model {cfg['model']} "
                f"(its options: {', '.join(sorted(options - set(_SHARED_MODEL_OPTIONS)))})")
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  activation = cfg["activation"]
  for field, low in (("depth", 0), ("width", 1)):   # sizes the MLP reads as one integer each
    value = kwargs.get(field)
    if cfg["model"] == "mlp" and value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low):
      raise _fail(field, cfg[field], f"an integer >= {low}")
  if "widths" in kwargs and cfg["model"] == "mlp":
    widths = kwargs["widths"]
    if isinstance(widths, (int, np.integer)) and not isinstance(widths, bool):
      widths = [widths] * (1 if kwargs.get("depth") is None else int(kwargs["depth"]))
    if not isinstance(widths, (list, tuple)) or not widths or any(
        isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
      raise _fail("widths", cfg["widths"], "a non-empty list of positive integers")
    kwargs["widths"] = tuple(int(w) for w in widths)
  if cfg["model"] == "mlp":
    # One canonical form (the hidden widths, the activation names the program selects among),
    # so members stating the same network differently share a program.
    try:
      hidden = mlp_lib.hidden_widths(kwargs.pop("widths", None), kwargs.pop("depth", None),
                                     kwargs.pop("width", None))
    except ValueError as e:
      raise ConfigError(f"widths: {e}") from None
    kwargs["widths"] = hidden
    names = sorted(set(_activations(cfg)))
    activation = names[0] if len(names) == 1 else tuple(names)
  kwargs.update(activation=activation, kernel_init=cfg["kernel_init"],
                bias_init=cfg["bias_init"])
  if "batchnorm" in options:
    kwargs["batchnorm"] = bool(cfg["batchnorm"])
  return tuple(sorted(kwargs.items()))


def resolve(config: Mapping[str, Any], *, num_classes: int,
            num_train: int | None = None) -> tuple[BucketSpec, dict[str, Any]]:
  """Validates a member config and splits it into (BucketSpec, numeric row).

  Args:
    config: flat mapping of hyperparameters; missing fields take defaults.
    num_classes: the data set's number of classes.
    num_train: training examples; gives the defaults of per-step schedule lengths (None:
      a per-step schedule must set the lengths it reads).

  Returns:
    (spec, row): row maps every numeric hyperparameter to a float (or a float list for
    `milestones` and per-layer `dropout`), plus `seed` and `epochs` as ints.

  Raises:
    ConfigError: one line naming the first bad field, its value and what is allowed.
  """
  cfg = with_defaults(config, num_train)
  # zeros and constant are one kind at two values (ones scaled by a per-member number), so
  # members that differ only there share one program.
  if cfg["bias_init"] == "zeros":
    cfg.update(bias_init="constant", bias_value=0.0)
  if cfg["kernel_init"] == "zeros":
    cfg.update(kernel_init="constant", init_scale=0.0)
  _choice(cfg, "model", models.list_models())
  _choice(cfg, "schedule", schedules.SCHEDULES)
  _choice(cfg, "schedule_per", schedules.SCHEDULE_UNITS)
  _choice(cfg, "loss", losses.LOSSES)
  _choice(cfg, "pad_mode", PAD_MODES)
  _choice(cfg, "shuffle", SHUFFLES)
  for field in ("regularize_biases", "flip"):
    _bool(cfg, field)
  if cfg["batchnorm"] is not None:
    _bool(cfg, "batchnorm")
  for field, low in (("batch_size", 1), ("eval_batch_size", 1), ("crop_padding", 0),
                     ("cutout", 0), ("seed", 0), ("epochs", 0)):
    _int(cfg, field, low)

  _number(cfg, "lr", low=0.0, high=math.inf, high_open=True, allowed="a finite number >= 0")
  _number(cfg, "momentum", low=0.0, high=1.0, high_open=True)
  _number(cfg, "dropout", low=0.0, high=1.0, high_open=True, vector=True)
  for field in ("beta1", "beta2", "rho", "gamma"):
    _number(cfg, field, low=0.0, high=1.0)
  _number(cfg, "l2", low=0.0, vector=True)
  for field in ("eps", "initial_accumulator", "weight_decay", "l1",
                "lr_min", "decay", "warmup", "init_scale"):
    _number(cfg, field, low=0.0)
  _number(cfg, "label_smoothing", low=0.0, high=1.0, high_open=True)
  for field in ("clip_norm", "step_size", "horizon", "div_factor", "final_div_factor",
                "huber_delta"):
    _number(cfg, field, low=0.0, low_open=True)
  _number(cfg, "pct_start", low=0.0, high=1.0, low_open=True, high_open=True)
  _number(cfg, "act_param", low=None)
  _number(cfg, "bias_value", low=None)
  if cfg["schedule"] == "multistep":
    milestones = cfg.get("milestones")
    if not isinstance(milestones, (list, tuple)) or not milestones:
      raise _fail("milestones", milestones, "a non-empty list of epochs (or steps) for multistep")
    _number(cfg, "milestones", low=0.0, vector=True)
  milestones = [float(m) for m in cfg.get("milestones") or []]

  model_kwargs = _model_kwargs(cfg)
  spec = BucketSpec(
      model=cfg["model"], model_kwargs=model_kwargs, num_classes=int(num_classes),
      loss=cfg["loss"], optimizer=cfg["optimizer"], schedule=cfg["schedule"],
      schedule_per=cfg["schedule_per"], batch_size=int(cfg["batch_size"]),
      regularize_biases=bool(cfg["regularize_biases"]), crop_padding=int(cfg["crop_padding"]),
      pad_mode=cfg["pad_mode"], flip=bool(cfg["flip"]), cutout=int(cfg["cutout"]),
      shuffle=cfg["shuffle"], eval_batch_size=int(cfg["eval_batch_size"]),
      num_milestones=len(milestones))
  try:
    sites = models.dropout_sites(spec.model, num_classes=spec.num_classes, **dict(model_kwargs))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"model: {cfg['model']} does not accept these settings ({e})") from None
  dropout = cfg["dropout"]
  if isinstance(dropout, (list, tuple)):
    if len(dropout) != sites:
      raise _fail("dropout", dropout, f"one rate or a list of {sites} rates (one per dropout site)")
    dropout = [float(d) for d in dropout]
  else:
    dropout = [float(dropout)] * sites

  l2 = cfg["l2"]
  if isinstance(l2, (list, tuple)) and (spec.model != "mlp" or len(l2) != sites):
    raise _fail("l2", l2, f"one number or a list of {sites} numbers (one per hidden layer)"
                if spec.model == "mlp" else "one number (a per-layer list is for model mlp)")
  if spec.model == "mlp":
    acts = _activations(cfg)
    if len(acts) != 1 and len(acts) != sites:
      raise _fail("activation", cfg["activation"],
                  f"one name or a list of {sites} names (one per hidden layer)")

  numeric = (set(optim.OPTIMIZER_HPARAMS) | set(SCHEDULE_DEFAULTS) | set(MODEL_HPARAMS)) - {
      "dropout", "l2"}
  row: dict[str, Any] = {k: float(cfg[k]) for k in sorted(numeric)}
  row["dropout"] = dropout
  row["l2"] = float(l2) if not isinstance(l2, (list, tuple)) else None
  if spec.model == "mlp":
    # The MLP reads its true shape from the row (see jaxnn.models.mlp, packing); L2 is one
    # coefficient per kernel: the hidden layers', then the output layer's. A per-layer list
    # leaves the output layer unpenalized (the reference Keras Tuner study regularizes its
    # hidden layers only); one number penalizes every kernel, as before.
    hidden = dict(spec.model_kwargs)["widths"]
    choices = mlp_choices(spec)
    per_layer_acts = acts * sites if len(acts) == 1 else acts
    row["widths"] = [float(w) for w in hidden]
    row["act_index"] = [float(choices.index(a)) for a in per_layer_acts]
    row["l2"] = ([float(l2)] * (sites + 1) if not isinstance(l2, (list, tuple))
                 else [float(v) for v in l2] + [0.0])
  row["milestones"] = milestones
  row["seed"] = int(cfg["seed"])
  row["epochs"] = int(cfg["epochs"])
  return spec, row


# ------------------------------------------------------------------------------------- packing
# Members whose specs differ only in what a packed program reads per member (the MLP's widths,
# depth and activations, the schedule kind) can share one program built at their padded shape; see
# jaxnn.models.mlp. `pack_key` says which specs may share, `merge_specs` gives the shared spec,
# `fit_row` pads a member's row to it.

PACKED_FIELDS = ("widths", "activation", "head_width")


def mlp_choices(spec: BucketSpec) -> tuple[str, ...]:
  """The activation names an MLP spec's program selects among."""
  activation = dict(spec.model_kwargs)["activation"]
  return (activation,) if isinstance(activation, str) else tuple(activation)


def _hidden(spec: BucketSpec) -> tuple[int, ...]:
  return tuple(dict(spec.model_kwargs)["widths"])


def _last_width(spec: BucketSpec) -> int:
  kwargs = dict(spec.model_kwargs)
  return kwargs.get("head_width") or kwargs["widths"][-1]


def pack_key(spec: BucketSpec) -> BucketSpec | None:
  """What must be equal for two members to share a packed program (None: never packed).

  MLPs with at least one hidden layer pack; every other family keeps one program per spec.
  """
  if spec.model != "mlp" or not _hidden(spec):
    return None
  kwargs = tuple((k, v) for k, v in spec.model_kwargs if k not in PACKED_FIELDS)
  return dataclasses.replace(spec, model_kwargs=kwargs, schedule="", optimizer="")


def _schedules(spec: BucketSpec) -> tuple[str, ...]:
  return (spec.schedule,) if isinstance(spec.schedule, str) else tuple(spec.schedule)


def optimizers(spec: BucketSpec) -> tuple[str, ...]:
  """The optimizer names a spec's program serves (several in a packed bucket)."""
  return (spec.optimizer,) if isinstance(spec.optimizer, str) else tuple(spec.optimizer)


def merge_specs(specs) -> BucketSpec:
  """The spec of one program that holds every member of `specs` (equal pack keys): each layer
  as wide as the widest member there, as deep as the deepest, every activation selectable."""
  specs = list(specs)
  if len(specs) == 1:
    return specs[0]
  keys = {pack_key(s) for s in specs}
  if len(keys) != 1 or None in keys:
    raise ValueError("merge_specs: these members cannot share a program")
  depth = max(len(_hidden(s)) for s in specs)
  widths = tuple(max((_hidden(s)[i] for s in specs if len(_hidden(s)) > i)) for i in range(depth))
  names = sorted({n for s in specs for n in mlp_choices(s)})
  head = max(_last_width(s) for s in specs)
  kwargs = dict(keys.pop().model_kwargs)
  kwargs.update(widths=widths, activation=names[0] if len(names) == 1 else tuple(names))
  if head != widths[-1]:
    kwargs["head_width"] = head
  schedules = sorted({n for s in specs for n in _schedules(s)})
  names = sorted({n for s in specs for n in optimizers(s)})
  return dataclasses.replace(specs[0], model_kwargs=tuple(sorted(kwargs.items())),
                             schedule=schedules[0] if len(schedules) == 1 else tuple(schedules),
                             optimizer=names[0] if len(names) == 1 else tuple(names))


def fits(spec: BucketSpec, bucket: BucketSpec) -> bool:
  """Whether a member of `spec` can train inside `bucket`'s program."""
  if spec == bucket:
    return True
  if pack_key(spec) is None or pack_key(spec) != pack_key(bucket):
    return False
  mine, theirs = _hidden(spec), _hidden(bucket)
  return (len(mine) <= len(theirs) and all(a <= b for a, b in zip(mine, theirs))
          and _last_width(spec) <= _last_width(bucket)
          and set(mlp_choices(spec)) <= set(mlp_choices(bucket))
          and set(_schedules(spec)) <= set(_schedules(bucket))
          and set(optimizers(spec)) <= set(optimizers(bucket)))


def fit_row(spec: BucketSpec, row: Mapping[str, Any], bucket: BucketSpec) -> dict[str, Any]:
  """A member's row (from `resolve`, for `spec`) padded to `bucket`'s program: absent layers get
  width 0, dropout 0 and L2 0 (their weights stay 0 anyway); activation indices are renumbered
  into the bucket's choices."""
  if spec == bucket:
    return dict(row)
  if not fits(spec, bucket):
    raise ValueError(f"fit_row: a {spec.name()} member does not fit bucket {bucket.name()}")
  depth = len(_hidden(bucket))
  pad = depth - len(_hidden(spec))
  mine, theirs = mlp_choices(spec), mlp_choices(bucket)
  out = dict(row)
  out["widths"] = list(row["widths"]) + [0.0] * pad
  out["act_index"] = [float(theirs.index(mine[int(i)])) for i in row["act_index"]] + [0.0] * pad
  out["dropout"] = list(row["dropout"]) + [0.0] * pad
  out["l2"] = list(row["l2"][:-1]) + [0.0] * pad + [row["l2"][-1]]
  if not isinstance(bucket.schedule, str):
    out["schedule_index"] = float(bucket.schedule.index(spec.schedule))
  if not isinstance(bucket.optimizer, str):   # the member's family (see optim.families)
    groups = optim.families(bucket.optimizer)
    out["optimizer_index"] = float(next(i for i, g in enumerate(groups) if spec.optimizer in g))
  return out


def split_fields(a: BucketSpec, b: BucketSpec) -> list[str]:
  """The config fields that keep two members in separate programs, e.g. ['optimizer',
  'batch_size'] ('shape' when only the cost model kept packable shapes apart)."""
  ka, kb = pack_key(a) or a, pack_key(b) or b
  out = [f.name for f in dataclasses.fields(BucketSpec)
         if f.name != "model_kwargs" and getattr(ka, f.name) != getattr(kb, f.name)]
  da, db = dict(ka.model_kwargs), dict(kb.model_kwargs)
  out += sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
  if set(optimizers(a)) != set(optimizers(b)) and not set(optimizers(a)) & set(optimizers(b)):
    out.append("optimizer")   # packable families the cost model kept apart
    out.sort()
  if not out and a != b:
    out.append("model" if pack_key(a) is None else "cost")
  return out


def spec_to_json(spec: BucketSpec) -> dict[str, Any]:
  return dataclasses.asdict(spec)


def spec_from_json(obj: Mapping[str, Any]) -> BucketSpec:
  """Inverse of `spec_to_json` after a JSON round trip (lists back to tuples)."""
  def tup(v):
    return tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v
  return BucketSpec(**{**obj, "model_kwargs": tuple((k, tup(v)) for k, v in obj["model_kwargs"]),
                       "schedule": tup(obj["schedule"]), "optimizer": tup(obj["optimizer"])})
