"""tensorflow-datasets as a source, without TensorFlow.

TensorFlow is not a dependency of this project (tensorflow-cpu is a ~274 MB wheel). What tfds
can do without it, and so what this module does:
- read a data set prepared in the ArrayRecord format through `builder.as_data_source` (random
  access, decoded with PIL/numpy);
- prepare one (`download_and_prepare(file_format='array_record')`) when its builder yields encoded
  images (bytes or paths).
What needs TensorFlow: preparing builders that yield numpy images (mnist, fashion_mnist, kmnist,
cifar10, cifar100 encode them to PNG through TF), and reading sets prepared in the default
TFRecord format. When TF is importable both work (TFRecord sets are read with
`as_dataset(batch_size=-1)`); otherwise the error says so and names the offline files to use
instead. Before any download a 1 s network probe runs, so an offline machine fails at once.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from jaxnn.data import cache, network
from jaxnn.data.containers import RawData
from jaxnn.data.errors import DataFormatError, DataNotFoundError

TENSORFLOW_CPU_WHEEL_MB = 274  # tensorflow_cpu-2.21.0 cp311 manylinux wheel

_log = logging.getLogger(__name__)


def tensorflow_available() -> bool:
  """Whether `import tensorflow` would succeed (without importing it)."""
  return importlib.util.find_spec("tensorflow") is not None


def base_name(name: str) -> str:
  """'emnist/balanced:3.1.0' -> 'emnist' (the folder tfds prepares into)."""
  return name.split(":")[0].split("/")[0]


def _import_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


def known_builder(name: str) -> bool:
  """Whether tfds has a builder called `name` (community data sets are not consulted)."""
  tfds = _import_tfds()
  return base_name(name) in tfds.list_builders(with_community_datasets=False)


def _builder(name: str, data_dir: Path):
  tfds = _import_tfds()
  try:
    return tfds.builder(name, data_dir=str(data_dir))
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"dataset: unknown tfds name {name!r}") from None


def _ensure_prepared(builder, name: str, data_dir: Path, download: bool, not_found: str,
                     needs_tensorflow: bool) -> None:
  if builder.is_prepared():
    return
  if not download:
    raise DataNotFoundError(f"{not_found}; downloads are off (download=False); pass data_dir= or "
                            "set JAXNN_DATA_DIR")
  if not network.network_available():
    raise DataNotFoundError(f"{not_found}; no network to download it ({network.PROBE_HOST} "
                            "unreachable within 1 s); pass data_dir= or set JAXNN_DATA_DIR")
  if needs_tensorflow and not tensorflow_available():
    raise DataNotFoundError(f"{not_found}; tfds can download '{name}' but needs TensorFlow to "
                            f"prepare it (pip install tensorflow-cpu, a ~{TENSORFLOW_CPU_WHEEL_MB}"
                            " MB wheel), or put the official files in the data folder")
  try:
    builder.download_and_prepare(file_format="array_record")
  except ModuleNotFoundError as e:
    if "tensorflow" not in str(e):
      raise
    raise DataNotFoundError(f"{not_found}; tfds needs TensorFlow to prepare '{name}' (pip install "
                            f"tensorflow-cpu, a ~{TENSORFLOW_CPU_WHEEL_MB} MB wheel)") from None


def _keys(builder, name: str, image_key: str | None, label_key: str | None):
  supervised = builder.info.supervised_keys or ("image", "label")
  image_key = image_key or supervised[0]
  label_key = label_key or supervised[1]
  features = builder.info.features
  for key in (image_key, label_key):
    if key not in features:
      raise ValueError(f"tfds '{name}': no feature {key!r}; features: {', '.join(features)}")
  shape = tuple(features[image_key].shape)
  if len(shape) != 3 or None in shape:
    raise ValueError(f"tfds '{name}': images have shape {shape}; only fixed-size [H, W, C] image "
                     "sets are supported (resize them into a folder: source instead)")
  if np.dtype(features[image_key].np_dtype) != np.uint8:
    raise ValueError(f"tfds '{name}': images are {features[image_key].np_dtype}, expected uint8")
  return image_key, label_key


def _read_data_source(source, image_key: str, label_key: str, where: str):
  # One record at a time: decoding dominates, and `__getitems__` is broken under
  # tfds.testing.mock_data (4.9.x), which the tests rely on.
  images, labels = [], []
  for i in range(len(source)):
    example = source[i]
    images.append(np.asarray(example[image_key], np.uint8))
    labels.append(int(example[label_key]))
  if not images:
    raise DataFormatError(f"{where}: split is empty")
  shapes = {im.shape for im in images}
  if len(shapes) != 1:
    raise DataFormatError(f"{where}: images of several shapes {sorted(shapes)}")
  return np.stack(images), np.asarray(labels, np.int32)


def _read_split(builder, tfds, split: str, image_key: str, label_key: str, name: str):
  where = f"tfds '{name}' split '{split}' in {builder.data_dir}"
  known = list(builder.info.splits.keys()) if isinstance(builder.info.splits, dict) else []
  if known and split not in known:
    raise ValueError(f"{where}: no such split; known: {', '.join(known)} (choose with "
                     "train_split= / test_split=)")
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:
    if not tensorflow_available():
      stored = getattr(builder.info.file_format, "value", builder.info.file_format)
      raise DataFormatError(f"{where}: stored as {stored}, which only "
                            "TensorFlow reads; install tensorflow-cpu or prepare it again with "
                            "file_format='array_record'") from None
    batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return np.asarray(batch[image_key], np.uint8), np.asarray(batch[label_key], np.int32)
  return _read_data_source(source, image_key, label_key, where)


def load_tfds(name: str, data_dir: Path, *, cache_dir: Path | None, download: bool = True,
              not_found: str | None = None, needs_tensorflow: bool = False,
              class_names: tuple[str, ...] | None = None, image_key: str | None = None,
              label_key: str | None = None, train_split: str = "train",
              test_split: str = "test") -> RawData:
  """Loads an image-classification set through tfds, preparing it when needed and possible.

  Args:
    name: tfds name, optionally with config and version ('emnist/balanced:3.1.0').
    data_dir: tfds data folder (holds <name>/<version>/).
    cache_dir: where decoded arrays are cached (None: no cache).
    download: whether a download may be attempted.
    not_found: first part of the error when the set is neither prepared nor downloadable.
    needs_tensorflow: the builder encodes numpy images, so preparing it needs TensorFlow.
    class_names: names to use instead of the label feature's.
    image_key, label_key: features to read (default: the builder's supervised keys).
    train_split, test_split: tfds split names.

  Returns:
    RawData of uint8 [N, H, W, C] images.

  Raises:
    DataNotFoundError: not prepared, and no way to prepare it here (no network, downloads off,
      or TensorFlow missing); within about a second when offline.
  """
  data_dir = Path(data_dir).expanduser()
  not_found = not_found or f"{name}: tfds data set not prepared in {data_dir / base_name(name)}"
  if not (data_dir / base_name(name)).exists() and not (download and network.network_available()):
    # Fast path for offline machines: nothing prepared, nothing downloadable; skip importing tfds.
    reason = "downloads are off (download=False)" if not download else (
        f"no network to download it ({network.PROBE_HOST} unreachable within 1 s)")
    raise DataNotFoundError(f"{not_found}; {reason}; pass data_dir= or set JAXNN_DATA_DIR")
  tfds = _import_tfds()
  builder = _builder(name, data_dir)
  _ensure_prepared(builder, name, data_dir, download, not_found, needs_tensorflow)
  image_key, label_key = _keys(builder, name, image_key, label_key)
  if class_names is None:
    label_feature = builder.info.features[label_key]
    class_names = tuple(getattr(label_feature, "names", None) or
                        [str(i) for i in range(label_feature.num_classes)])
  data_path = Path(str(builder.data_path))
  identity = "\n".join(["tfds", name, str(builder.info.version), train_split, test_split,
                        image_key, label_key,
                        cache.file_identity(data_path) if data_path.exists() else str(data_path)])

  def build() -> RawData:
    train = _read_split(builder, tfds, train_split, image_key, label_key, name)
    test = _read_split(builder, tfds, test_split, image_key, label_key, name)
    return RawData(*train, *test, tuple(class_names),
                   source=f"tfds {name} {builder.info.version} in {builder.data_dir}")

  return cache.cached(cache_dir, f"tfds_{name}", identity, build)
