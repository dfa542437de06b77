"""Keras Tuner (RandomSearch or Hyperband) on the seed space: what people use today.

Run by compare.py in its own process (TensorFlow and JAX never share one):
  python benchmarks/peers/keras_tuner_runner.py --tuner=random --data_dir=... --out=trace.json
"""

from __future__ import annotations

import os
import tempfile

import common

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_model(hp, keras):
  depth = hp.Int("depth", *common.DEPTH)
  activation = hp.Choice("activation", list(common.ACTIVATIONS))
  l2 = hp.Choice("l2", list(common.L2))
  dropout = hp.Choice("dropout", list(common.DROPOUT))
  model = keras.Sequential([keras.Input((3072,))])
  for i in range(depth):
    model.add(keras.layers.Dense(hp.Choice(f"units_{i}", list(common.WIDTHS)),
                                 activation=activation,
                                 kernel_regularizer=keras.regularizers.l2(l2)))
    if dropout:
      model.add(keras.layers.Dropout(dropout))
  model.add(keras.layers.Dense(10))
  model.compile(optimizer=keras.optimizers.Adam(common.LR),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def main():
  args, budget = common.runner_args(tuner=("random", "hyperband"))
  dataset = common.load_split(args.data_dir, budget)
  x, y = common.flat_float(dataset, dataset.train)
  xv, yv = common.flat_float(dataset, dataset.val)

  import keras
  import keras_tuner as kt

  trace = common.Trace()

  trials = [-1]

  class Record(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      trials[0] += 1   # one fit per trial, one trial at a time

    def on_epoch_end(self, epoch, logs=None):
      trace.add(logs["val_accuracy"], self.model.count_params(), trials[0])

  workdir = tempfile.mkdtemp(prefix="kt_")
  build = lambda hp: build_model(hp, keras)
  if args.tuner == "random":
    tuner = kt.RandomSearch(build, objective="val_accuracy", max_trials=budget.trials,
                            seed=budget.seed, directory=workdir, project_name="seed")
  else:
    tuner = kt.Hyperband(build, objective="val_accuracy", max_epochs=budget.epochs, factor=3,
                         seed=budget.seed, directory=workdir, project_name="seed")
  tuner.search(x, y, epochs=budget.epochs, batch_size=common.BATCH, validation_data=(xv, yv),
               callbacks=[Record()], verbose=0)
  trace.dump(args.out, trials=len(tuner.oracle.trials))


if __name__ == "__main__":
  main()
