"""MNIST (LeCun et al., 1998) as uint8 ``(n, 28, 28)`` images and labels, via tensorflow-datasets.

Two sources:

* ``'idx'`` (default, offline): the official IDX files in a local folder
  (``idx_dir`` or the ``JMETA_MNIST_DIR`` environment variable), gzipped
  (``t10k-images-idx3-ubyte.gz``) or not. The test pair
  ``t10k-{images-idx3,labels-idx1}-ubyte`` is required; the training pair
  ``train-{images-idx3,labels-idx1}-ubyte`` is read when present. The TFDS builder
  ``jmeta_mnist`` reads them from its manual dir after checking the sha256 of each
  file's *decompressed* bytes against ``IDX_SHA256`` (the official files' sums; a
  re-compressed ``.gz`` holds the same bytes, so the archive's own sum is not
  checked). Verification is never turned off.
* ``'tfds'`` (online): TFDS's stock ``mnist`` builder downloads the official files.
  Used only when no folder is configured and ``source='tfds'`` is passed.

The prepared arrays are cached as an ``.npz`` per partition under the TFDS data dir
(``data_dir``, else ``JMETA_TFDS_DATA_DIR``, else ``TFDS_DATA_DIR``, else
``~/tensorflow_datasets``), written atomically, so later loads skip TFDS entirely.

Optimizee split. The shared copy on our machines holds only the official 10,000-image
*test* partition, so the learned-optimizer experiment splits it in two:
``optimizee_split('train')`` (8,000 images) and ``optimizee_split('heldout')``
(2,000), a uniformly random, *non-stratified* permutation drawn with
``numpy.random.default_rng(OPTIMIZEE_SPLIT_SEED)``. Results trained on it are not the
standard 60k/10k protocol and must say so.

Example::

  train = optimizee_split('train')  # MNISTData, uint8 (8000, 28, 28), labels (8000,)
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from typing import NamedTuple

import numpy as np

from jmeta.data import cache

MNIST_DIR_ENV = 'JMETA_MNIST_DIR'
PARTITIONS = ('train', 'test')
SOURCES = ('idx', 'tfds')
OPTIMIZEE_PARTS = ('train', 'heldout')
OPTIMIZEE_SPLIT_SEED = 20_161_206  # fixed: the split is part of the code
OPTIMIZEE_HELDOUT = 2_000

IMAGE_SIZE = 28
NUM_CLASSES = 10
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
BUILDER_NAME = 'jmeta_mnist'
BUILDER_VERSION = '1.0.0'

# File stems of each partition's (images, labels).
IDX_FILES = {
  'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
  'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
# sha256 of the decompressed official IDX files (the test pair as in the shared
# data folder's README; the training pair as published with them).
IDX_SHA256 = {
  'train-images-idx3-ubyte': (
    'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db'
  ),
  'train-labels-idx1-ubyte': (
    '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5'
  ),
  't10k-images-idx3-ubyte': (
    '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7'
  ),
  't10k-labels-idx1-ubyte': (
    'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2'
  ),
}


class MNISTDataError(FileNotFoundError):
  """The MNIST IDX files are missing, malformed or fail their checksum."""


class MNISTData(NamedTuple):
  """Images and labels of one partition (or part of one).

  Attributes:
    images: uint8 ``(n, 28, 28)``, ink 255 and background 0.
    labels: uint8 ``(n,)``, digits 0..9.
  """

  images: np.ndarray
  labels: np.ndarray


def _missing(where: str) -> MNISTDataError:
  test = ' and '.join(f'{n}[.gz]' for n in IDX_FILES['test'])
  return MNISTDataError(
    f'MNIST IDX files not found: {where}. Set {MNIST_DIR_ENV} (or pass idx_dir) '
    f'to a folder holding {test} (and, for the training partition, '
    f'{" and ".join(IDX_FILES["train"])}), gzipped or not. With internet access '
    "and no folder configured, load_mnist(source='tfds') downloads them through "
    "TFDS's own mnist builder instead."
  )


def _find(folder: str, stem: str) -> str | None:
  for name in (stem, stem + '.gz'):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      return path
  return None


def read_bytes(path: str) -> bytes:
  """The decompressed bytes of an IDX file (``.gz`` or plain)."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      return f.read()
  except (OSError, EOFError) as error:
    raise MNISTDataError(
      f'cannot read {path}: {error}. Replace it with a good copy.'
    ) from error


def parse_idx(data: bytes, magic: int, path: str = '<bytes>') -> np.ndarray:
  """An IDX file's uint8 array: ``(n, rows, cols)`` for magic 2051, ``(n,)`` for 2049.

  The header is big-endian: the magic number, then one uint32 per dimension.
  """
  ndim = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}[magic]
  header = 4 * (1 + ndim)
  found = int(np.frombuffer(data[:4], '>u4')[0]) if len(data) >= 4 else None
  if found != magic:
    raise MNISTDataError(
      f'{path} has IDX magic number {found}, expected {magic} '
      f'({"images" if magic == IMAGES_MAGIC else "labels"}).'
    )
  if len(data) < header:
    raise MNISTDataError(f'{path} is {len(data)} bytes, shorter than its IDX header.')
  shape = np.frombuffer(data[4:header], '>u4').tolist()
  size = int(np.prod(shape))
  if len(data) != header + size:
    raise MNISTDataError(
      f'{path} holds {len(data) - header} bytes after its header, expected {size} '
      f'for shape {tuple(shape)}; the file is truncated or corrupt.'
    )
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def partitions_in(folder: str) -> tuple[str, ...]:
  """The partitions whose two IDX files are both in ``folder``.

  Raises:
    MNISTDataError: the folder does not exist, the test pair is missing, or only one
      file of the training pair is present.
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise _missing(f'the folder {folder!r} does not exist')
  found = []
  for partition, stems in IDX_FILES.items():
    missing = [s for s in stems if _find(folder, s) is None]
    if not missing:
      found.append(partition)
    elif partition == 'test' or len(missing) == 1:
      raise _missing(f'{" and ".join(missing)}[.gz] not in {folder!r}')
  return tuple(found)


def verify_partition(folder: str, partition: str) -> MNISTData:
  """Reads one partition's IDX pair from ``folder``, checking each file's
  decompressed sha256 against ``IDX_SHA256`` and its shapes.

  Raises:
    MNISTDataError: a file is missing, fails its checksum (the message names the
      file, the expected and the actual sum), or is malformed.
  """
  arrays = []
  for stem, magic in zip(IDX_FILES[partition], (IMAGES_MAGIC, LABELS_MAGIC)):
    path = _find(folder, stem)
    if path is None:
      raise _missing(f'{stem}[.gz] not in {folder!r}')
    data = read_bytes(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != IDX_SHA256[stem]:
      raise MNISTDataError(
        f'checksum mismatch for {path}: expected the decompressed {stem} to have '
        f'sha256 {IDX_SHA256[stem]}, got {actual} ({len(data)} bytes). The file is '
        'corrupt, truncated or not the official MNIST; replace it with a good '
        'copy. Verification is never skipped.'
      )
    arrays.append(parse_idx(data, magic, path))
  images, labels = arrays
  if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
    raise MNISTDataError(
      f'{partition}: {images.shape} images do not fit {labels.shape} labels '
      f'(expected (n, {IMAGE_SIZE}, {IMAGE_SIZE}) and (n,)).'
    )
  return MNISTData(images, labels)


def cache_path(partition: str, data_dir: str | None = None, source: str = 'idx') -> str:
  """Where the prepared arrays of one partition from ``source`` are cached."""
  name = f'mnist_{source}_{partition}.npz'
  return cache.prepared_path(data_dir, BUILDER_NAME, BUILDER_VERSION, name)


def _read_cache(path: str) -> MNISTData:
  data = MNISTData(
    **cache.read_arrays(path, MNISTData._fields, 'MNIST', MNISTDataError)
  )
  images, labels = data
  if (
    images.dtype != np.uint8
    or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE)
    or labels.shape != images.shape[:1]
  ):
    raise MNISTDataError(
      f'the MNIST cache {path} holds images {images.dtype}{images.shape} and '
      f'labels {labels.shape}; delete it to rebuild it.'
    )
  return data


@functools.cache
def mnist_builder() -> type:
  """The ``jmeta_mnist`` TFDS builder class (defined and registered on first use).

  Configs ``'test'`` (the t10k pair only) and ``'full'`` (all four files). It reads
  the IDX files from the download config's ``manual_dir`` after
  ``verify_partition`` and stores each image (uint8 28x28), its ``label`` and its
  ``index`` in the IDX file.
  """
  import tensorflow_datasets as tfds
  from etils import epath

  class JmetaMnist(tfds.core.GeneratorBasedBuilder):
    """MNIST from sha256-checked local IDX files."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {BUILDER_VERSION: 'Local IDX files, decompressed sha256 checked.'}
    BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name='test', description='the t10k pair only'),
      tfds.core.BuilderConfig(name='full', description='train and t10k pairs'),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Place the official MNIST IDX files (gzipped or not) in the manual dir '
      f'(jmeta passes ${MNIST_DIR_ENV}); their decompressed sha256 must be '
      f'{IDX_SHA256}.'
    )
    # As for jmeta_omniglot: locate this out-of-tree builder's code directly.
    code_path = epath.Path(__file__)

    def _info(self):
      return self.dataset_info_from_configs(
        description='MNIST digits, 28x28 uint8, from local official IDX files.',
        features=cache.image_features(tfds, IMAGE_SIZE, label=np.uint8, index=np.int32),
        homepage='http://yann.lecun.com/exdb/mnist/',
        citation='LeCun, Bottou, Bengio & Haffner (1998), Proc. IEEE 86(11).',
      )

    def _split_generators(self, dl_manager):
      folder = os.fspath(dl_manager.manual_dir)
      parts = ('test',) if self.builder_config.name == 'test' else PARTITIONS
      return {p: self._generate_examples(verify_partition(folder, p)) for p in parts}

    def _generate_examples(self, data):
      for i, (image, label) in enumerate(zip(*data)):
        yield i, {'image': image, 'label': label, 'index': i}

  return JmetaMnist


def _in_index_order(examples: dict) -> MNISTData:
  order = np.argsort(examples['index'], kind='stable')
  return MNISTData(
    np.asarray(examples['image'], np.uint8)[order],
    np.asarray(examples['label'], np.uint8)[order],
  )


def _prepare_from_idx(folder: str, partition: str, data_dir: str) -> MNISTData:
  tfds = cache.import_tfds('MNIST')
  present = partitions_in(folder)
  if partition not in present:
    raise _missing(
      f'the {partition} partition was asked for but '
      f'{" and ".join(IDX_FILES[partition])} are not in {folder!r}'
    )
  config = 'full' if 'train' in present else 'test'
  builder = mnist_builder()(config=config, data_dir=data_dir)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(
      manual_dir=folder, try_download_gcs=False
    )
  )
  return _in_index_order(
    tfds.as_numpy(builder.as_dataset(split=partition, batch_size=-1))
  )


def _prepare_from_stock_tfds(partition: str, data_dir: str) -> MNISTData:
  """TFDS's stock ``mnist`` builder (downloads; TFDS checks its own checksums).
  Its examples are stored shuffled, so the order differs from the IDX files'."""
  tfds = cache.import_tfds('MNIST')
  builder = tfds.builder('mnist', data_dir=data_dir)
  builder.download_and_prepare()
  examples = tfds.as_numpy(
    builder.as_dataset(split=partition, batch_size=-1, shuffle_files=False)
  )
  return MNISTData(
    np.asarray(examples['image'][..., 0], np.uint8),
    np.asarray(examples['label'], np.uint8),
  )


def load_mnist(
  partition: str = 'test',
  *,
  idx_dir: str | None = None,
  data_dir: str | None = None,
  source: str = 'idx',
) -> MNISTData:
  """One official MNIST partition, uint8 images ``(n, 28, 28)`` and labels ``(n,)``.

  Args:
    partition: ``'test'`` (10,000 images) or ``'train'`` (60,000).
    idx_dir: folder of the IDX files; defaults to ``$JMETA_MNIST_DIR``.
    data_dir: TFDS data dir for the prepared dataset and the ``.npz`` cache;
      defaults to ``$JMETA_TFDS_DATA_DIR``, then TFDS's default.
    source: ``'idx'`` or ``'tfds'`` (downloads through TFDS's stock ``mnist``;
      only applies when no folder is configured).

  Raises:
    MNISTDataError: no folder configured or found, a needed file missing (the
      message names ``JMETA_MNIST_DIR`` and the files), a checksum mismatch, a
      malformed file or an unreadable cache.
  """
  if partition not in PARTITIONS:
    raise ValueError(f'partition must be one of {PARTITIONS}, got {partition!r}.')
  if source not in SOURCES:
    raise ValueError(f'source must be one of {SOURCES}, got {source!r}.')
  folder = cache.local_folder(idx_dir, MNIST_DIR_ENV)
  if folder is None and source == 'idx':
    raise _missing(f'idx_dir was not given and {MNIST_DIR_ENV} is not set')
  root = cache.resolve_data_dir(data_dir)
  if folder is not None:
    source = 'idx'
    partitions_in(folder)  # a missing folder or file is named before any cache use

  def prepare() -> MNISTData:
    if source == 'idx':
      return _prepare_from_idx(folder, partition, root)
    return _prepare_from_stock_tfds(partition, root)

  return cache.load_or_prepare(
    cache_path(partition, root, source),
    _read_cache,
    prepare,
    lambda path, data: cache.write_arrays(path, **data._asdict()),
  )


def optimizee_split_indices(
  num_images: int,
  num_heldout: int = OPTIMIZEE_HELDOUT,
  seed: int = OPTIMIZEE_SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
  """``(train, heldout)`` image indices: a uniform random permutation of
  ``range(num_images)`` from ``numpy.random.default_rng(seed)``, the last
  ``num_heldout`` held out (not stratified by class), each part sorted."""
  if not 0 < num_heldout < num_images:
    raise ValueError(
      f'num_heldout must be in (0, {num_images}) for {num_images} images, got '
      f'{num_heldout}.'
    )
  order = np.random.default_rng(seed).permutation(num_images)
  cut = num_images - num_heldout
  return np.sort(order[:cut]), np.sort(order[cut:])


def optimizee_split(
  part: str,
  *,
  idx_dir: str | None = None,
  data_dir: str | None = None,
  source: str = 'idx',
) -> MNISTData:
  """The learned-optimizer experiment's images: ``'train'`` (8,000) or ``'heldout'``
  (2,000) of the official MNIST *test* partition, split by
  ``optimizee_split_indices`` (seed ``OPTIMIZEE_SPLIT_SEED``, not stratified)."""
  if part not in OPTIMIZEE_PARTS:
    raise ValueError(f'part must be one of {OPTIMIZEE_PARTS}, got {part!r}.')
  data = load_mnist('test', idx_dir=idx_dir, data_dir=data_dir, source=source)
  train, heldout = optimizee_split_indices(len(data.labels))
  rows = train if part == 'train' else heldout
  return MNISTData(data.images[rows], data.labels[rows])
