"""A trained member as a self-contained folder, and a model ready to predict loaded from it.

    model = jaxnn.export.load("WORKDIR/best")
    model.predict(x)                 # class ids, x raw as in the data set (uint8 images)
    model.evaluate(x, y)             # {"loss": ..., "acc": ...}, as the sweep measured it

A folder holds `model.json` (the member's config, member id, classes, the normalization
statistics of its training split, free-form `info`) and `weights/` (an Orbax checkpoint of
params and batch statistics). The config is the one source of the architecture: loading
rebuilds the model through `jaxnn.member.resolve`, so no Python object is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxnn import member as member_lib
from jaxnn import population

MODEL_FILE = "model.json"
WEIGHTS_DIR = "weights"


@dataclasses.dataclass
class ExportedModel:
  """One trained member: its config, weights and input normalization."""
  config: dict[str, Any]
  member_id: int
  params: Any
  batch_stats: Any
  mean: np.ndarray
  std: np.ndarray
  num_classes: int
  class_names: tuple[str, ...] = ()
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    # Only the forward pass reads this row: schedule lengths (which need the training set's
    # size when per step) are unused, so any size will do.
    self.spec, row = member_lib.resolve(self.config, num_classes=self.num_classes, num_train=1)
    self._row = jax.tree_util.tree_map(jnp.asarray, population.stack_rows([row], [self.member_id]))

  def logits(self, x, batch_size: int = 1000) -> np.ndarray:
    """Logits [N, classes] for raw inputs `x` (normalized here, as in training)."""
    hp = jax.tree_util.tree_map(lambda a: a[0], self._row)
    parts = [np.asarray(population.apply(self.spec, self.params, self.batch_stats, hp,
                                         jnp.asarray(x[i:i + batch_size]), jnp.asarray(self.mean),
                                         jnp.asarray(self.std)))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.float32)

  def predict(self, x, batch_size: int = 1000) -> np.ndarray:
    """Predicted class ids [N]."""
    return self.logits(x, batch_size).argmax(-1)

  def evaluate(self, x, y) -> dict[str, float]:
    """Mean loss and accuracy on (x, y), computed by the same program the sweep evaluates with."""
    stacked = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], (self.params, self.batch_stats))
    state = population.MemberState(
        params=stacked[0], batch_stats=stacked[1], opt_state=None, step=jnp.zeros(1, jnp.int32),
        epoch=jnp.zeros(1, jnp.int32), active=jnp.zeros(1, bool), diverged=jnp.zeros(1, bool))
    loss, acc = jax.device_get(population.evaluate(
        self.spec, state, self._row, jnp.asarray(x), jnp.asarray(y, jnp.int32),
        jnp.asarray(self.mean), jnp.asarray(self.std)))
    return {"loss": float(loss[0]), "acc": float(acc[0])}


def save(path: str | os.PathLike, model: ExportedModel) -> None:
  """Writes `model` to the folder `path` (replaced if it exists).

  Args:
    path: the folder to write (model.json and weights/).
    model: what to save; params and batch_stats of ONE member (no members axis).
  """
  path = os.path.abspath(os.fspath(path))
  os.makedirs(path, exist_ok=True)
  weights = {"params": model.params}
  if jax.tree_util.tree_leaves(model.batch_stats):
    weights["batch_stats"] = model.batch_stats
  # Host arrays, written by the calling process alone: in a multi-process sweep only process 0
  # exports, so Orbax must not wait for the others at its barriers.
  alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                             active_processes={jax.process_index()})
  with ocp.StandardCheckpointer(multiprocessing_options=alone) as checkpointer:
    checkpointer.save(os.path.join(path, WEIGHTS_DIR), jax.device_get(weights), force=True)
  meta = {"config": model.config, "member_id": int(model.member_id),
          "num_classes": int(model.num_classes), "class_names": list(model.class_names),
          "mean": np.asarray(model.mean).tolist(), "std": np.asarray(model.std).tolist(),
          "info": model.info}
  tmp = os.path.join(path, f".{MODEL_FILE}.tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=1, allow_nan=False, default=_plain)
  os.replace(tmp, os.path.join(path, MODEL_FILE))


def load(path: str | os.PathLike) -> ExportedModel:
  """Loads a folder written by `save` into a model ready to predict.

  Args:
    path: the folder (for a sweep: WORKDIR/best).

  Returns:
    The ExportedModel (weights on the default device).

  Raises:
    FileNotFoundError: `path` holds no exported model.
  """
  path = os.path.abspath(os.fspath(path))
  meta_path = os.path.join(path, MODEL_FILE)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f"{path}: no exported model here ({MODEL_FILE} missing)")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  with ocp.StandardCheckpointer() as checkpointer:
    weights = checkpointer.restore(os.path.join(path, WEIGHTS_DIR))
  return ExportedModel(
      config=meta["config"], member_id=meta["member_id"], params=weights["params"],
      batch_stats=weights.get("batch_stats", {}), mean=np.asarray(meta["mean"], np.float32),
      std=np.asarray(meta["std"], np.float32), num_classes=meta["num_classes"],
      class_names=tuple(meta["class_names"]), info=meta.get("info", {}))


def _plain(value):
  if hasattr(value, "tolist"):
    return value.tolist()
  raise TypeError(f"not JSON-serializable: {type(value).__name__}")
