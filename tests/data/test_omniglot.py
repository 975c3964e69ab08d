"""Omniglot loading, caching, checksums and the character splits (real archives)."""

import io
import os
import shutil
import time
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jmeta.data import (
  OMNIGLOT_DIR_ENV,
  PROTOCOLS,
  SPLITS,
  OmniglotDataError,
  load_omniglot,
  load_split,
  make_episode_sampler,
  protocol_rotation,
  split_names,
)
from jmeta.data import omniglot as omniglot_lib

SIZES = {'vinyals': (1028, 172, 423), 'maml': (1100, 100, 423)}
REPACKED = {n: s['repacked'] for n, s in omniglot_lib.ARCHIVE_SHA256.items()}


def test_images_are_28x28_uint8_with_bright_strokes(omniglot):
  images = omniglot.images
  assert images.shape == (1623, 20, 28, 28)
  assert images.dtype == np.uint8
  assert set(np.unique(images).tolist()) == {0, 255}  # MAML's resize stays binary
  assert images.max() == 255
  assert images.mean() < 40  # strokes (255) are a small fraction of the pixels
  # Background is dark: the image border is almost never a stroke.
  border = np.concatenate([images[..., 0, :], images[..., -1, :]], axis=-1)
  assert border.mean() < 5
  assert (images.reshape(1623 * 20, -1).max(axis=1) == 255).all()  # none is blank


def test_rows_follow_global_character_ids(omniglot, omniglot_dir):
  names = omniglot.names
  assert len(names) == len(set(names)) == 1623
  with zipfile.ZipFile(os.path.join(omniglot_dir, 'images_evaluation.zip')) as z:
    first = next(n for n in sorted(z.namelist()) if n.endswith('.png'))
  assert first == 'images_evaluation/Angelic/character01/0965_01.png'
  assert names[964] == 'Angelic/character01'
  assert names[-1] == 'ULOG/character26'


def test_images_match_maml_resize_of_the_pngs(omniglot, omniglot_dir):
  rng = np.random.default_rng(0)
  for archive in ('images_background.zip', 'images_evaluation.zip'):
    with zipfile.ZipFile(os.path.join(omniglot_dir, archive)) as z:
      pngs = [n for n in z.namelist() if n.endswith('.png')]
      for entry in rng.choice(pngs, 5, replace=False):
        char_id, drawing = (int(x) for x in entry[-11:-4].split('_'))
        with Image.open(io.BytesIO(z.read(entry))) as image:  # as MAML does
          small = np.asarray(image.resize((28, 28), resample=Image.LANCZOS))
        expected = np.where(small, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(
          omniglot.images[char_id - 1, drawing - 1], expected
        )
        alphabet, character = entry.split('/')[1:3]
        assert omniglot.names[char_id - 1] == f'{alphabet}/{character}'


def _centre_in_patch_weights() -> np.ndarray:
  """(28, 105): row i averages the input pixels whose centres j + 0.5 lie in
  (3.75 i, 3.75 (i + 1)], the half-open box that Pillow's BOX filter samples."""
  scale = 105 / 28
  centres = np.arange(105) + 0.5
  rows = np.arange(28)[:, None]
  inside = (centres > rows * scale) & (centres <= (rows + 1) * scale)
  return inside / inside.sum(axis=1, keepdims=True)


def test_area_resize_is_the_patch_mean_of_the_strokes(omniglot_dir):
  weights = _centre_in_patch_weights()
  rng = np.random.default_rng(1)
  with zipfile.ZipFile(os.path.join(omniglot_dir, 'images_evaluation.zip')) as z:
    pngs = [n for n in z.namelist() if n.endswith('.png')]
    for entry in rng.choice(pngs, 8, replace=False):
      with Image.open(io.BytesIO(z.read(entry))) as image:
        background = np.asarray(image)
      expected = weights @ (~background).astype(float) @ weights.T * 255
      got = omniglot_lib.resize_area(background)
      assert got.dtype == np.uint8 and got.shape == (28, 28)
      # Pillow rounds fixed-point sums: within one grey level, never more.
      np.testing.assert_allclose(got, expected, atol=1.0)
      assert len(np.unique(got)) > 2  # grey levels, not a binary image


def test_a_stroke_between_sample_points_vanishes_from_maml_resize_not_area():
  # Nearest neighbour samples input rows 1 and 5 for output rows 0 and 1, so a
  # stroke on rows 2-3 is lost; the area resize keeps it at half intensity.
  background = np.ones((105, 105), bool)
  background[2:4, :] = False
  assert omniglot_lib.resize_like_maml(background).max() == 0
  area = omniglot_lib.resize_area(background)
  np.testing.assert_array_equal(area[0], np.full(28, 128))  # 2 of 4 rows, rounded
  assert area[1:].max() == 0


def test_area_images_load_through_their_own_builder_config_and_cache(
  omniglot, omniglot_dir
):
  area = load_omniglot(omniglot_dir, resize='area')
  assert area.names == omniglot.names
  assert omniglot_lib.cache_path(resize='area') != omniglot_lib.cache_path()
  assert os.path.exists(omniglot_lib.cache_path(resize='area'))
  # The same ink, spread over grey levels: the mean pixel differs by under 1%.
  assert abs(area.images.mean() / omniglot.images.mean() - 1) < 0.01
  with zipfile.ZipFile(os.path.join(omniglot_dir, 'images_background.zip')) as z:
    for entry in ('images_background/Greek/character05/0398_07.png',):
      char_id, drawing = (int(x) for x in entry[-11:-4].split('_'))
      with Image.open(io.BytesIO(z.read(entry))) as image:
        expected = omniglot_lib.resize_area(np.asarray(image))
      np.testing.assert_array_equal(area.images[char_id - 1, drawing - 1], expected)
  rows = load_split('vinyals', 'test', archive_dir=omniglot_dir, resize='area')
  index = [area.names.index(n) for n in split_names('vinyals', 'test')]
  np.testing.assert_array_equal(rows, area.images[index])


def test_unknown_resize_raises(omniglot_dir):
  with pytest.raises(ValueError, match=r"resize must be one of \('maml', 'area'\)"):
    load_omniglot(omniglot_dir, resize='bilinear')


def test_second_load_uses_the_cache(omniglot, omniglot_dir):
  start = time.perf_counter()
  again = load_omniglot(omniglot_dir)
  elapsed = time.perf_counter() - start
  np.testing.assert_array_equal(again.images, omniglot.images)
  assert again.names == omniglot.names
  assert elapsed < 5.0, f'cached load took {elapsed:.1f}s'
  assert os.path.exists(omniglot_lib.cache_path())


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_splits_have_the_published_sizes_and_partition_all_characters(
  protocol, omniglot
):
  lists = [split_names(protocol, s) for s in SPLITS]
  assert tuple(len(x) for x in lists) == SIZES[protocol]
  for names in lists:
    assert len(set(names)) == len(names)
  train, val, test = (set(x) for x in lists)
  assert not train & val and not train & test and not val & test
  assert train | val | test == set(omniglot.names)


def test_split_files_record_provenance():
  vinyals = omniglot_lib.split_spec('vinyals')
  maml = omniglot_lib.split_spec('maml')
  assert 'jakesnell/prototypical-networks' in vinyals['provenance']['val']
  assert maml['provenance']['seed'] == 1 and maml['provenance']['method']
  for spec in (vinyals, maml):
    assert spec['counts'] == {s: len(spec[s]) for s in SPLITS}


def test_vinyals_split_matches_the_reference(omniglot):
  # Vinyals et al.: the last 423 characters by global id are the test set; the
  # ProtoNets validation set is five whole background alphabets.
  assert set(split_names('vinyals', 'test')) == set(omniglot.names[1200:])
  val_alphabets = {n.split('/')[0] for n in split_names('vinyals', 'val')}
  assert val_alphabets == {
    'Hebrew',
    'Mkhedruli_(Georgian)',
    'Armenian',
    'Early_Aramaic',
    'Bengali',
  }
  assert split_names('vinyals', 'val')[0] == 'Hebrew/character01'


@pytest.mark.parametrize('protocol', PROTOCOLS)
def test_load_split_returns_the_named_rows(protocol, omniglot, omniglot_dir):
  row = {name: i for i, name in enumerate(omniglot.names)}
  for split, size in zip(SPLITS, SIZES[protocol]):
    images = load_split(protocol, split, archive_dir=omniglot_dir)
    assert images.shape == (size, 20, 28, 28) and images.dtype == np.uint8
    names = split_names(protocol, split)
    for i in (0, size // 2, size - 1):
      np.testing.assert_array_equal(images[i], omniglot.images[row[names[i]]])


def test_protocol_rotation():
  assert protocol_rotation('vinyals') == 'classes'
  assert protocol_rotation('maml') == 'random'
  with pytest.raises(ValueError, match='protocol must be one of'):
    protocol_rotation('lake')
  with pytest.raises(ValueError, match='split must be one of'):
    split_names('vinyals', 'trainval')


def test_episodes_from_a_real_split(omniglot_dir):
  images = jnp.asarray(load_split('vinyals', 'test', archive_dir=omniglot_dir))
  sampler = make_episode_sampler(
    images, n_way=20, k_shot=1, q_query=5, rotation=protocol_rotation('vinyals')
  )
  assert sampler.num_classes == 423 * 4
  batch = jax.jit(sampler.sample, static_argnums=1)(jax.random.key(0), 2)
  assert batch.support_inputs.shape == (2, 20, 28, 28, 1)
  assert batch.query_inputs.shape == (2, 100, 28, 28, 1)
  assert 0.0 < float(batch.support_inputs.mean()) < 0.25  # dark background


def test_missing_directory_error_names_the_variable(tmp_path, monkeypatch):
  monkeypatch.delenv(OMNIGLOT_DIR_ENV, raising=False)
  with pytest.raises(OmniglotDataError, match=OMNIGLOT_DIR_ENV) as info:
    load_omniglot(data_dir=str(tmp_path))
  assert 'images_background.zip' in str(info.value)
  assert REPACKED['images_background.zip'] in str(info.value)

  nowhere = tmp_path / 'no-such-folder'
  monkeypatch.setenv(OMNIGLOT_DIR_ENV, str(nowhere))
  with pytest.raises(OmniglotDataError, match=OMNIGLOT_DIR_ENV) as info:
    load_omniglot(data_dir=str(tmp_path))
  assert str(nowhere) in str(info.value)
  assert isinstance(info.value, FileNotFoundError)

  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(OmniglotDataError, match='images_evaluation.zip') as info:
    load_split('vinyals', 'train', archive_dir=str(empty), data_dir=str(tmp_path))
  assert str(empty) in str(info.value) and OMNIGLOT_DIR_ENV in str(info.value)


def _copy_with_truncated_background(src: str, dst) -> str:
  for name in omniglot_lib.ARCHIVE_SHA256:
    shutil.copy(os.path.join(src, name), dst / name)
  path = dst / 'images_background.zip'
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  return str(path)


def test_corrupt_archive_error_names_file_and_sums(omniglot_dir, tmp_path):
  bad = _copy_with_truncated_background(omniglot_dir, tmp_path)
  actual = omniglot_lib.sha256_file(bad)
  # Even with a cache in the default data dir, the archives are verified first.
  with pytest.raises(OmniglotDataError) as info:
    load_omniglot(str(tmp_path))
  message = str(info.value)
  assert bad in message
  assert REPACKED['images_background.zip'] in message
  assert actual in message


def test_tfds_builder_verifies_its_own_checksums(omniglot_dir, tmp_path):
  import tensorflow_datasets as tfds

  archives = tmp_path / 'archives'
  archives.mkdir()
  bad = _copy_with_truncated_background(omniglot_dir, archives)
  builder = omniglot_lib.omniglot_builder()(data_dir=str(tmp_path / 'tfds'))
  assert builder.name == 'jmeta_omniglot'
  assert builder.REGISTERED_SHA256 == omniglot_lib.ARCHIVE_SHA256
  config = tfds.download.DownloadConfig(
    manual_dir=str(archives), try_download_gcs=False
  )
  with pytest.raises(OmniglotDataError, match='checksum mismatch') as info:
    builder.download_and_prepare(download_config=config)
  assert bad in str(info.value)
  assert not builder.is_prepared()


def test_unreadable_cache_is_reported_not_overwritten(omniglot_dir, tmp_path):
  path = omniglot_lib.cache_path(str(tmp_path))
  os.makedirs(os.path.dirname(path))
  with open(path, 'wb') as f:
    f.write(b'not an npz')
  with pytest.raises(OmniglotDataError, match='delete it to rebuild it') as info:
    load_omniglot(omniglot_dir, data_dir=str(tmp_path))
  assert path in str(info.value)
  with open(path, 'rb') as f:
    assert f.read() == b'not an npz'


def test_unknown_source_raises():
  with pytest.raises(ValueError, match='source must be one of'):
    load_omniglot(source='http')
