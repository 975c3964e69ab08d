"""Omniglot (Lake et al., 2015) as uint8 ``(1623, 20, 28, 28)`` arrays, via tensorflow-datasets.

Two sources:

* ``'archives'`` (default, offline): ``images_background.zip`` and
  ``images_evaluation.zip`` in a local folder (``archive_dir`` or the
  ``JMETA_OMNIGLOT_DIR`` environment variable). The TFDS builder ``jmeta_omniglot``
  reads them from its manual dir and first checks each archive's sha256 against its
  own registered sums (``ARCHIVE_SHA256``: the upstream brendenlake/omniglot sums
  and those of the repacked copy in the shared data folder). Verification is never
  turned off.
* ``'tfds'`` (online): TFDS's stock ``omniglot`` builder downloads the upstream
  archives and checks them against TFDS's registered checksums. Used only when no
  archive folder is configured and ``source='tfds'`` is passed.

Images are resized as MAML's ``omniglot_resized`` script does
(``PIL.Image.open(png).resize((28, 28), resample=Image.LANCZOS)``; Pillow resamples
1-bit images with nearest neighbour, so pixels stay binary), then inverted so
strokes are 255 and background 0. ``resize='area'`` instead averages each pixel's
3.75 x 3.75 patch of the drawing (``resize_area``): grey levels, like the 28x28
greyscale Omniglot that the Neural Statistician's reference code trains on (Burda
et al.'s IWAE ``chardata.mat``, whose resize is not published). Row ``i`` holds
global character id ``i + 1``; ``names[i]`` is ``'Alphabet/characterNN'``.

The prepared arrays are cached as an ``.npz`` under the TFDS data dir
(``data_dir``, else ``JMETA_TFDS_DATA_DIR``, else ``TFDS_DATA_DIR``, else
``~/tensorflow_datasets``), written atomically, so later loads skip TFDS entirely.

Example::

  train = load_split('vinyals', 'train')  # uint8 (1028, 20, 28, 28)
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
from importlib import resources
from typing import NamedTuple

import numpy as np

from jmeta.data.cache import (
  image_features,
  import_tfds,
  load_or_prepare,
  local_folder,
  prepared_path,
  read_arrays,
  resolve_data_dir,
  write_arrays,
)

OMNIGLOT_DIR_ENV = 'JMETA_OMNIGLOT_DIR'
PROTOCOLS = ('vinyals', 'maml')
SPLITS = ('train', 'val', 'test')
SOURCES = ('archives', 'tfds')

NUM_CHARACTERS = 1623
NUM_DRAWINGS = 20
IMAGE_SIZE = 28
BUILDER_NAME = 'jmeta_omniglot'
BUILDER_VERSION = '1.0.0'

# Accepted sha256 sums per archive: the repacked copy (shared data README) and the
# upstream github.com/brendenlake/omniglot python/*.zip (as registered by TFDS).
ARCHIVE_SHA256 = {
  'images_background.zip': {
    'repacked': '7a4cae547f16207901bd3acaabd866c1dbbef4d559dff26d797dbc6423a64a1e',
    'upstream': 'ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640',
  },
  'images_evaluation.zip': {
    'repacked': 'd84af890b3ea334eca90f1cb04c6111603a1b620d66b82f86414b8707fbd0e8d',
    'upstream': '1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee',
  },
}

_PROTOCOL_ROTATION = {'vinyals': 'classes', 'maml': 'random'}
_PNG_PATH = re.compile(
  r'(?:^|/)images_(?:background|evaluation)/([^/]+)/(character\d\d)/(\d{4})_(\d\d)\.png$'
)


class OmniglotDataError(FileNotFoundError):
  """The Omniglot archives are missing, unreadable or fail their checksum."""


class OmniglotData(NamedTuple):
  """All of Omniglot.

  Attributes:
    images: uint8 ``(1623, 20, 28, 28)``, strokes 255 and background 0; row ``i``
      is global character id ``i + 1``, column ``j`` drawing ``j + 1``.
    names: ``'Alphabet/characterNN'`` for each row.
  """

  images: np.ndarray
  names: tuple[str, ...]


def _expected_files_text() -> str:
  return ' and '.join(
    f'{name} (sha256 {sums["repacked"]}, or upstream {sums["upstream"]})'
    for name, sums in ARCHIVE_SHA256.items()
  )


def _missing(where: str) -> OmniglotDataError:
  return OmniglotDataError(
    f'Omniglot archives not found: {where}. Set {OMNIGLOT_DIR_ENV} (or pass '
    f'archive_dir) to a folder holding {_expected_files_text()}. With internet '
    "access and no archive folder configured, load_omniglot(source='tfds') "
    "downloads them through TFDS's own omniglot builder instead."
  )


def sha256_file(path: str) -> str:
  """Hex sha256 of the file at ``path``."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify_archives(archive_dir: str) -> dict[str, str]:
  """Checks both archives in ``archive_dir`` against ``ARCHIVE_SHA256``.

  Returns:
    ``{file name: sha256}``.

  Raises:
    OmniglotDataError: the folder or a file is missing, or a file's sha256 is not
      a registered one (the message names the file, the expected and the actual
      sum).
  """
  archive_dir = os.fspath(archive_dir)
  if not os.path.isdir(archive_dir):
    raise _missing(f'the folder {archive_dir!r} does not exist')
  names = list(ARCHIVE_SHA256)
  missing = [n for n in names if not os.path.isfile(os.path.join(archive_dir, n))]
  if missing:
    raise _missing(f'{" and ".join(missing)} not in {archive_dir!r}')
  sums = {}
  for name, accepted in ARCHIVE_SHA256.items():
    path = os.path.join(archive_dir, name)
    actual = sha256_file(path)
    if actual not in accepted.values():
      raise OmniglotDataError(
        f'checksum mismatch for {path}: expected sha256 {accepted["repacked"]} '
        f'(repacked copy) or {accepted["upstream"]} (upstream), got {actual} '
        f'({os.path.getsize(path)} bytes). The file is corrupt or truncated; '
        'replace it with a good copy. Verification is never skipped.'
      )
    sums[name] = actual
  return sums


def resize_like_maml(background_mask: np.ndarray) -> np.ndarray:
  """A 105x105 drawing (True = background, as in the PNGs) -> uint8 28x28, strokes 255.

  The same call as MAML's ``omniglot_resized``: ``resize((28, 28), LANCZOS)`` on
  the 1-bit image (Pillow uses nearest neighbour for mode ``'1'``).
  """
  from PIL import Image

  image = Image.fromarray(np.asarray(background_mask, dtype=bool))
  small = np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.LANCZOS))
  return np.where(small.astype(bool), 0, 255).astype(np.uint8)


def resize_area(background_mask: np.ndarray) -> np.ndarray:
  """A 105x105 drawing (True = background) -> uint8 28x28: each pixel 255 times the
  stroke fraction among the drawing's pixels whose centres fall in its 3.75 x 3.75
  patch (Pillow's ``BOX`` filter).

  Nearest neighbour (``resize_like_maml``) copies one pixel of each patch, so a
  thin stroke between the copied pixels is lost; averaging keeps every pixel's
  share, as grey levels.
  """
  from PIL import Image

  strokes = Image.fromarray(np.where(background_mask, 0, 255).astype(np.uint8))
  return np.asarray(strokes.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.BOX))


# name -> (function, description of the builder config); the first is the default.
_RESIZERS = {
  'maml': (resize_like_maml, "MAML's nearest-neighbour resize."),
  'area': (resize_area, 'Area-averaged grey levels.'),
}
RESIZES = tuple(_RESIZERS)


def _png_to_28(data: bytes, resize: str) -> np.ndarray:
  from PIL import Image

  with Image.open(io.BytesIO(data)) as image:
    if image.mode != '1':
      image = image.convert('L').point(lambda v: 255 if v >= 128 else 0, mode='1')
    return _RESIZERS[resize][0](np.asarray(image))


def cache_path(
  data_dir: str | None = None, source: str = 'archives', resize: str = 'maml'
) -> str:
  """Where the prepared arrays of ``source`` resized by ``resize`` are cached."""
  suffix = '' if resize == 'maml' else f'_{resize}'
  return prepared_path(
    data_dir, BUILDER_NAME, BUILDER_VERSION, f'omniglot28_{source}{suffix}.npz'
  )


def _read_cache(path: str) -> OmniglotData:
  arrays = read_arrays(path, ('images', 'names'), 'Omniglot', OmniglotDataError)
  images, names = arrays['images'], tuple(str(n) for n in arrays['names'])
  shape = (NUM_CHARACTERS, NUM_DRAWINGS, IMAGE_SIZE, IMAGE_SIZE)
  if images.shape != shape or images.dtype != np.uint8 or len(names) != shape[0]:
    raise OmniglotDataError(
      f'the Omniglot cache {path} holds images {images.dtype}{images.shape} and '
      f'{len(names)} names, expected uint8{shape} and {shape[0]} names. It was not '
      'overwritten; delete it to rebuild it.'
    )
  return OmniglotData(images=images, names=names)


def _write_cache(path: str, data: OmniglotData, metadata: dict) -> None:
  write_arrays(
    path,
    images=data.images,
    names=np.asarray(data.names),
    metadata=np.asarray(json.dumps(metadata, sort_keys=True)),
  )


@functools.cache
def omniglot_builder() -> type:
  """The ``jmeta_omniglot`` TFDS builder class (defined and registered on first use).

  It reads both archives from the download config's ``manual_dir`` after checking
  them against ``ARCHIVE_SHA256``, and stores 28x28 uint8 images (strokes 255)
  with their global ``character_id`` (1..1623), ``drawing`` (1..20) and ``name``;
  splits ``background`` and ``evaluation``. Its configs are the ``RESIZES``
  (default ``'maml'``).
  """
  import tensorflow_datasets as tfds
  from etils import epath

  class JmetaOmniglot(tfds.core.GeneratorBasedBuilder):
    """Omniglot, 28x28 uint8 (strokes 255), from sha256-checked manual archives."""

    name = BUILDER_NAME
    VERSION = tfds.core.Version(BUILDER_VERSION)
    RELEASE_NOTES = {BUILDER_VERSION: 'MAML-style 28x28 images, sha256-checked.'}
    BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name=name, description=description)
      for name, (_, description) in _RESIZERS.items()
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f'Place {_expected_files_text()} in the manual dir (jmeta passes '
      f'${OMNIGLOT_DIR_ENV}). The upstream brendenlake/omniglot python/*.zip and '
      'the repacked copy are accepted; any other bytes fail verification.'
    )
    REGISTERED_SHA256 = ARCHIVE_SHA256
    # TFDS otherwise locates an out-of-tree builder's code through
    # `importlib_resources`, which is not installed on Python >= 3.9. There is no
    # URL checksums file: the manual archives are checked against REGISTERED_SHA256.
    code_path = epath.Path(__file__)

    def _info(self):
      return self.dataset_info_from_configs(
        description='Omniglot resized to 28x28, strokes 255.',
        features=image_features(
          tfds,
          IMAGE_SIZE,
          character_id=np.int32,
          drawing=np.int32,
          name=tfds.features.Text(),
        ),
        homepage='https://github.com/brendenlake/omniglot',
        citation='Lake, Salakhutdinov & Tenenbaum (2015), Science 350(6266).',
      )

    def _split_generators(self, dl_manager):
      manual_dir = os.fspath(dl_manager.manual_dir)
      verify_archives(manual_dir)
      return {
        part: self._generate_examples(
          dl_manager.iter_archive(os.path.join(manual_dir, f'images_{part}.zip'))
        )
        for part in ('background', 'evaluation')
      }

    def _generate_examples(self, archive):
      for path, fobj in archive:
        match = _PNG_PATH.search(path.replace(os.sep, '/'))
        if match is None:
          continue
        alphabet, character, char_id, drawing = match.groups()
        yield (
          f'{char_id}_{drawing}',
          {
            'image': _png_to_28(fobj.read(), self.builder_config.name),
            'character_id': int(char_id),
            'drawing': int(drawing),
            'name': f'{alphabet}/{character}',
          },
        )

  return JmetaOmniglot


def _assemble(ids, drawings, names, images) -> OmniglotData:
  """Examples -> ``OmniglotData``, checking that every (character, drawing) is filled."""
  out = np.zeros((NUM_CHARACTERS, NUM_DRAWINGS, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
  filled = np.zeros((NUM_CHARACTERS, NUM_DRAWINGS), bool)
  row_names = [''] * NUM_CHARACTERS
  for char_id, drawing, name, image in zip(ids, drawings, names, images):
    out[char_id - 1, drawing - 1] = image
    filled[char_id - 1, drawing - 1] = True
    row_names[char_id - 1] = name.decode() if isinstance(name, bytes) else str(name)
  if not filled.all():
    raise OmniglotDataError(
      f'the Omniglot data is incomplete: {int((~filled).sum())} of {filled.size} '
      '(character, drawing) images are missing.'
    )
  return OmniglotData(images=out, names=tuple(row_names))


def _prepare_from_archives(
  archive_dir: str, data_dir: str, resize: str
) -> OmniglotData:
  tfds = import_tfds('Omniglot', 'pillow')
  builder = omniglot_builder()(data_dir=data_dir, config=resize)
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(
      manual_dir=archive_dir, try_download_gcs=False
    )
  )
  examples = tfds.as_numpy(
    builder.as_dataset(split='background+evaluation', batch_size=-1)
  )
  return _assemble(
    examples['character_id'], examples['drawing'], examples['name'], examples['image']
  )


def _prepare_from_stock_tfds(data_dir: str, resize: str) -> OmniglotData:
  """TFDS's stock ``omniglot`` builder (downloads; TFDS checks its own checksums).

  The stock builder does not keep drawing numbers, so drawings are stored in the
  order TFDS reads them.
  """
  tfds = import_tfds('Omniglot', 'pillow')
  builder = tfds.builder('omniglot', data_dir=data_dir)
  builder.download_and_prepare()
  alphabets = builder.info.features['alphabet'].names
  ids, drawings, names, images = [], [], [], []
  counts = np.zeros(NUM_CHARACTERS + 1, int)
  for split in ('train', 'test'):  # background, evaluation
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      char_id = int(example['label']) + 1
      counts[char_id] += 1
      ids.append(char_id)
      drawings.append(min(counts[char_id], NUM_DRAWINGS))
      alphabet = alphabets[int(example['alphabet'])]
      names.append(f'{alphabet}/character{int(example["alphabet_char_id"]) + 1:02d}')
      images.append(_RESIZERS[resize][0](example['image'][..., 0] >= 128))
  return _assemble(ids, drawings, names, images)


def load_omniglot(
  archive_dir: str | None = None,
  *,
  data_dir: str | None = None,
  source: str = 'archives',
  resize: str = 'maml',
) -> OmniglotData:
  """All 1623 Omniglot characters, 20 drawings each, as uint8 28x28 (strokes 255).

  Args:
    archive_dir: folder holding ``images_background.zip`` and
      ``images_evaluation.zip``; defaults to ``$JMETA_OMNIGLOT_DIR``.
    data_dir: TFDS data dir for the prepared dataset and the ``.npz`` cache;
      defaults to ``$JMETA_TFDS_DATA_DIR``, then TFDS's default.
    source: ``'archives'`` or ``'tfds'``. ``'tfds'`` downloads through TFDS's stock
      ``omniglot`` builder and only applies when no archive folder is configured
      (otherwise the local archives are used).
    resize: ``'maml'`` (binary, nearest neighbour) or ``'area'`` (grey levels);
      see the module docstring.

  Raises:
    OmniglotDataError: no archive folder configured or found (the message names
      ``JMETA_OMNIGLOT_DIR``, where it looked and the expected files with their
      sha256), an archive fails its checksum, or the cache is unreadable.
  """
  if source not in SOURCES:
    raise ValueError(f'source must be one of {SOURCES}, got {source!r}.')
  if resize not in RESIZES:
    raise ValueError(f'resize must be one of {RESIZES}, got {resize!r}.')
  folder = local_folder(archive_dir, OMNIGLOT_DIR_ENV)
  if folder is None and source == 'archives':
    raise _missing(f'archive_dir was not given and {OMNIGLOT_DIR_ENV} is not set')
  root = resolve_data_dir(data_dir)
  if folder is not None:
    source, metadata = 'archives', {'archives': verify_archives(folder)}
  else:
    metadata = {'archives': "TFDS's omniglot builder (upstream checksums)"}

  def prepare() -> OmniglotData:
    if source == 'archives':
      return _prepare_from_archives(folder, root, resize)
    return _prepare_from_stock_tfds(root, resize)

  metadata.update(builder=f'{BUILDER_NAME}:{BUILDER_VERSION}', resize=resize)
  return load_or_prepare(
    cache_path(root, source, resize),
    _read_cache,
    prepare,
    lambda path, data: _write_cache(path, data, metadata),
  )


def _check_protocol(protocol: str) -> None:
  if protocol not in PROTOCOLS:
    raise ValueError(f'protocol must be one of {PROTOCOLS}, got {protocol!r}.')


def split_spec(protocol: str) -> dict:
  """The JSON record of a protocol's split: lists, counts and provenance."""
  _check_protocol(protocol)
  text = resources.files('jmeta.data').joinpath('splits', f'{protocol}.json')
  return json.loads(text.read_text())


@functools.cache
def split_names(protocol: str, split: str) -> tuple[str, ...]:
  """The character names (``'Alphabet/characterNN'``) of one split of a protocol."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  return tuple(split_spec(protocol)[split])


def load_split(
  protocol: str,
  split: str,
  *,
  archive_dir: str | None = None,
  data_dir: str | None = None,
  source: str = 'archives',
  resize: str = 'maml',
) -> np.ndarray:
  """uint8 ``(characters, 20, 28, 28)`` for one split, rows in the split file's order.

  Sizes: vinyals 1028/172/423, maml 1100/100/423 (train/val/test). Rotations are
  not applied here; sample episodes with ``rotation=protocol_rotation(protocol)``.
  """
  names = split_names(protocol, split)
  data = load_omniglot(archive_dir, data_dir=data_dir, source=source, resize=resize)
  row = {name: i for i, name in enumerate(data.names)}
  return data.images[np.asarray([row[name] for name in names])]


def protocol_rotation(protocol: str) -> str:
  """The episode rotation of a protocol: ``'classes'`` (vinyals), ``'random'`` (maml)."""
  _check_protocol(protocol)
  return _PROTOCOL_ROTATION[protocol]
