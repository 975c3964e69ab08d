"""The MNIST loader on tiny synthetic IDX folders, the optimizee split, and the real
copy when ``$JMETA_MNIST_DIR`` (or the shared folder) holds it."""

import gzip
import hashlib
import os
import pathlib

import numpy as np
import pytest

from jmeta.data import TFDS_DATA_DIR_ENV, mnist

SHARED_COPY = pathlib.Path('/work/shared/data/mnist')


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
  header = np.asarray([magic, *array.shape], '>u4').tobytes()
  return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_partition(folder, partition, n, seed, gz=True):
  """Writes a random partition of ``n`` images; returns it and its files' sums."""
  rng = np.random.default_rng(seed)
  data = mnist.MNISTData(
    rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
    rng.integers(0, 10, (n,), dtype=np.uint8),
  )
  sums = {}
  for stem, array, magic in zip(
    mnist.IDX_FILES[partition], data, (mnist.IMAGES_MAGIC, mnist.LABELS_MAGIC)
  ):
    raw = idx_bytes(array, magic)
    sums[stem] = hashlib.sha256(raw).hexdigest()
    if gz:
      (folder / f'{stem}.gz').write_bytes(gzip.compress(raw))
    else:
      (folder / stem).write_bytes(raw)
  return data, sums


def test_parse_idx_reads_magic_and_shapes():
  images = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
  np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(images, 2051), 2051), images)
  labels = np.array([3, 7, 1], np.uint8)
  np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(labels, 2049), 2049), labels)
  with pytest.raises(mnist.MNISTDataError, match='magic number 2049, expected 2051'):
    mnist.parse_idx(idx_bytes(labels, 2049), 2051)
  with pytest.raises(mnist.MNISTDataError, match='truncated'):
    mnist.parse_idx(idx_bytes(images, 2051)[:-1], 2051)


def test_verify_partition_reads_gz_and_plain_and_refuses_a_bad_sum(
  tmp_path, monkeypatch
):
  data, sums = write_partition(tmp_path, 'test', 5, seed=0, gz=True)
  train, train_sums = write_partition(tmp_path, 'train', 7, seed=1, gz=False)
  # The registered sums are the official files': synthetic bytes are refused.
  with pytest.raises(mnist.MNISTDataError, match='checksum mismatch .* Verification'):
    mnist.verify_partition(str(tmp_path), 'test')
  monkeypatch.setattr(mnist, 'IDX_SHA256', {**sums, **train_sums})
  assert mnist.partitions_in(str(tmp_path)) == ('train', 'test')
  for got, want in zip(mnist.verify_partition(str(tmp_path), 'test'), data):
    np.testing.assert_array_equal(got, want)
  for got, want in zip(mnist.verify_partition(str(tmp_path), 'train'), train):
    np.testing.assert_array_equal(got, want)


def test_missing_folder_and_files_are_named(tmp_path, monkeypatch):
  monkeypatch.delenv(mnist.MNIST_DIR_ENV, raising=False)
  with pytest.raises(mnist.MNISTDataError, match=mnist.MNIST_DIR_ENV):
    mnist.load_mnist(data_dir=str(tmp_path))
  with pytest.raises(mnist.MNISTDataError, match='does not exist'):
    mnist.load_mnist(idx_dir=str(tmp_path / 'nowhere'), data_dir=str(tmp_path))
  with pytest.raises(mnist.MNISTDataError, match='t10k-images-idx3-ubyte'):
    mnist.load_mnist(idx_dir=str(tmp_path), data_dir=str(tmp_path))
  write_partition(tmp_path, 'test', 3, seed=0)
  (tmp_path / 'train-images-idx3-ubyte').write_bytes(b'')  # half a training pair
  with pytest.raises(mnist.MNISTDataError, match='train-labels-idx1-ubyte'):
    mnist.partitions_in(str(tmp_path))
  with pytest.raises(ValueError, match='partition must be one of'):
    mnist.load_mnist('validation', idx_dir=str(tmp_path))


def test_load_mnist_goes_through_the_tfds_builder_and_caches(tmp_path, monkeypatch):
  folder = tmp_path / 'idx'
  folder.mkdir()
  data, sums = write_partition(folder, 'test', 6, seed=2)
  monkeypatch.setattr(mnist, 'IDX_SHA256', sums)
  cache = tmp_path / 'tfds'
  got = mnist.load_mnist(idx_dir=str(folder), data_dir=str(cache))
  for a, b in zip(got, data):
    np.testing.assert_array_equal(a, b)  # the IDX order, whatever TFDS shuffles
  assert (cache / 'jmeta_mnist' / 'test' / '1.0.0').is_dir()
  assert os.path.exists(mnist.cache_path('test', str(cache)))
  with pytest.raises(mnist.MNISTDataError, match='train partition was asked for'):
    mnist.load_mnist('train', idx_dir=str(folder), data_dir=str(cache))


def test_optimizee_split_is_deterministic_disjoint_and_complete():
  train, heldout = mnist.optimizee_split_indices(10_000)
  again = mnist.optimizee_split_indices(10_000)
  np.testing.assert_array_equal(train, again[0])
  np.testing.assert_array_equal(heldout, again[1])
  assert (len(train), len(heldout)) == (8_000, 2_000)
  assert not np.intersect1d(train, heldout).size
  np.testing.assert_array_equal(np.union1d(train, heldout), np.arange(10_000))
  other, _ = mnist.optimizee_split_indices(10_000, seed=1)
  assert not np.array_equal(train, other)
  with pytest.raises(ValueError, match='num_heldout'):
    mnist.optimizee_split_indices(10, num_heldout=10)


def real_copy() -> str:
  path = os.environ.get(mnist.MNIST_DIR_ENV) or (
    str(SHARED_COPY) if SHARED_COPY.is_dir() else None
  )
  if not path:
    pytest.skip(f'no MNIST copy: set {mnist.MNIST_DIR_ENV}')
  return path


def test_the_real_test_partition_and_its_split(tmp_path_factory):
  folder = real_copy()
  data_dir = os.environ.get(TFDS_DATA_DIR_ENV) or str(tmp_path_factory.mktemp('tfds'))
  test = mnist.load_mnist(idx_dir=folder, data_dir=data_dir)
  assert test.images.shape == (10_000, 28, 28) and test.images.dtype == np.uint8
  np.testing.assert_array_equal(
    np.bincount(test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  )
  train = mnist.optimizee_split('train', idx_dir=folder, data_dir=data_dir)
  heldout = mnist.optimizee_split('heldout', idx_dir=folder, data_dir=data_dir)
  assert (len(train.labels), len(heldout.labels)) == (8_000, 2_000)
  assert np.bincount(heldout.labels, minlength=10).min() > 150  # every digit present


def test_a_folder_with_all_four_files_also_gives_the_training_partition(
  tmp_path, monkeypatch
):
  folder = tmp_path / 'idx'
  folder.mkdir()
  test, sums = write_partition(folder, 'test', 4, seed=3)
  train, train_sums = write_partition(folder, 'train', 6, seed=4, gz=False)
  monkeypatch.setattr(mnist, 'IDX_SHA256', {**sums, **train_sums})
  cache = str(tmp_path / 'tfds')
  for partition, want in (('train', train), ('test', test)):
    got = mnist.load_mnist(partition, idx_dir=str(folder), data_dir=cache)
    for a, b in zip(got, want):
      np.testing.assert_array_equal(a, b)
  assert (tmp_path / 'tfds' / 'jmeta_mnist' / 'full' / '1.0.0').is_dir()
