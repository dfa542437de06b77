"""The tensorflow-datasets path, without TensorFlow and without network.

`tfds.testing.mock_data` stands in for prepared mnist / cifar10 records; a tiny builder defined
here is really prepared in the ArrayRecord format and read back through `as_data_source`, which
shows the whole path works without TensorFlow.
"""

import io
import time
from unittest import mock

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from jaxnn import data  # noqa: E402
from jaxnn.data import network, tfds_source  # noqa: E402


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def _tiny_images(n, seed):
  return np.random.default_rng(seed).integers(0, 256, (n, 6, 7, 3), dtype=np.uint8)


class JaxnnTinyShapes(tfds.core.GeneratorBasedBuilder):
  """Yields PNG bytes, so preparing it needs no TensorFlow."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(6, 7, 3)),
            "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(12, 0), "test": self._generate_examples(6, 1)}

  def _generate_examples(self, n, seed):
    for i, image in enumerate(_tiny_images(n, seed)):
      yield i, {"image": _png(image), "label": i % 3}


def _sorted_examples(x, y):
  order = np.lexsort((x.reshape(len(x), -1).sum(1), y))
  return x[order], y[order]


@pytest.fixture
def prepared_mock(tmp_path, monkeypatch):
  """A data folder where tfds believes the set is prepared; mock_data supplies the records."""
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  for name in ("mnist", "cifar10"):
    (tmp_path / name).mkdir()
  with tfds.testing.mock_data(num_examples=30):
    yield tmp_path


@pytest.mark.parametrize("name,shape,first_class", [("mnist", (28, 28, 1), "0"),
                                                    ("cifar10", (32, 32, 3), "airplane")])
def test_mock_prepared_sets_load_as_arrays(prepared_mock, name, shape, first_class):
  ds = data.load(name, prepared_mock, cache_dir=False)
  assert ds.sizes() == {"train": 24, "val": 6, "test": 30}
  assert ds.train.x.dtype == np.uint8 and ds.train.x.shape[1:] == shape
  assert ds.train.y.dtype == np.int32 and 0 <= ds.train.y.min() and ds.train.y.max() < 10
  assert ds.num_classes == 10 and ds.class_names[0] == first_class
  assert ds.source.startswith(f"tfds {name}")


def test_mock_download_path_prepares_array_record(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(network, "network_available", lambda *a, **k: True)
  spy = lambda self, **kwargs: calls.append(kwargs)  # noqa: E731
  # Patched inside mock_data, which installs its own no-op download_and_prepare.
  with tfds.testing.mock_data(num_examples=10), \
      mock.patch.object(tfds.core.DatasetBuilder, "download_and_prepare", spy):
    ds = data.load("emnist/balanced", tmp_path, val_fraction=0.0, cache_dir=False)
  assert calls == [{"file_format": "array_record"}]
  assert ds.train.x.shape == (10, 28, 28, 1) and ds.num_classes == 47


def test_really_prepared_array_record_set_reads_without_tensorflow(tmp_path):
  JaxnnTinyShapes(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  cache_dir = tmp_path / "cache"
  ds = data.load("jaxnn_tiny_shapes", tmp_path, val_fraction=0.0, cache_dir=cache_dir)
  assert ds.class_names == ("a", "b", "c") and ds.sizes() == {"train": 12, "val": 0, "test": 6}
  # tfds shuffles records when preparing: compare as sets of (image, label).
  want = _sorted_examples(_tiny_images(12, 0), np.arange(12) % 3)
  got = _sorted_examples(ds.train.x, ds.train.y)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  assert len(list(cache_dir.glob("*.npz"))) == 1
  again = data.load("jaxnn_tiny_shapes", tmp_path, val_fraction=0.0, cache_dir=cache_dir)
  np.testing.assert_array_equal(again.test.x, ds.test.x)


def test_tfrecord_without_tensorflow_says_so(tmp_path, monkeypatch):
  JaxnnTinyShapes(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()

  def tfrecord_only(self, *args, **kwargs):
    raise NotImplementedError("Random access data source for file format tfrecord")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "as_data_source", tfrecord_only)
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: False)
  with pytest.raises(data.DataFormatError, match="only TensorFlow reads.*tensorflow-cpu"):
    data.load("jaxnn_tiny_shapes", tmp_path, cache_dir=False)


def test_builder_that_needs_tensorflow_fails_before_downloading(tmp_path, monkeypatch):
  monkeypatch.setattr(network, "network_available", lambda *a, **k: True)
  monkeypatch.setattr(tfds_source, "tensorflow_available", lambda: False)

  def no_download(self, **kwargs):
    raise AssertionError("must not download what it cannot prepare")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  with pytest.raises(data.DataNotFoundError, match="needs TensorFlow.*274 MB.*official files"):
    data.load("mnist", tmp_path)


def test_offline_tfds_name_fails_within_a_second(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXNN_OFFLINE", "1")
  tfds_source.known_builder("emnist")  # import tfds outside the timed part
  start = time.perf_counter()
  with pytest.raises(data.DataNotFoundError, match=r"emnist/letters.*no network"):
    data.load("emnist/letters", tmp_path)
  assert time.perf_counter() - start < 1.0


def test_network_probe_is_bounded():
  start = time.perf_counter()
  network.network_available(timeout_s=0.5, host="10.255.255.1", port=9)  # unroutable
  assert time.perf_counter() - start < 1.0


def test_unregistered_name_prepared_in_data_dir_goes_to_tfds(tmp_path):
  from jaxnn.data import registry
  with pytest.raises(ValueError, match="unknown name 'my_set'"):
    registry.resolve("my_set", tmp_path)
  (tmp_path / "my_set").mkdir()  # a set tfds prepared from code we do not have
  name, spec = registry.resolve("my_set", tmp_path)
  assert name == "my_set" and spec.description == "tfds my_set"


def test_missing_split_is_named(tmp_path):
  JaxnnTinyShapes(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  with pytest.raises(ValueError, match="split 'validation'.*known: train, test"):
    data.load("jaxnn_tiny_shapes", tmp_path, test_split="validation", cache_dir=False)
