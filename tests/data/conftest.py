"""Fixtures for the data tests: the real Omniglot archives, prepared once per machine.

The archives come from ``$JMETA_OMNIGLOT_DIR``; the TFDS dataset and the ``.npz``
cache live in ``$JMETA_TFDS_DATA_DIR`` (else TFDS's default data dir), so the
one-time prepare is shared by later runs and by pytest-xdist workers.
"""

import os

import pytest

from jmeta.data.omniglot import OMNIGLOT_DIR_ENV, OmniglotData, load_omniglot


@pytest.fixture(scope='session')
def omniglot_dir() -> str:
  """The folder holding the Omniglot archives; fails (never skips) when unset."""
  path = os.environ.get(OMNIGLOT_DIR_ENV)
  if not path:
    pytest.fail(
      f'{OMNIGLOT_DIR_ENV} is not set: point it at the folder holding '
      'images_background.zip and images_evaluation.zip, e.g. '
      f'{OMNIGLOT_DIR_ENV}=/path/to/omniglot pytest tests/data'
    )
  return path


@pytest.fixture(scope='session')
def omniglot(omniglot_dir) -> OmniglotData:
  """All of Omniglot, from the stable TFDS data dir (prepared once, then cached)."""
  return load_omniglot(omniglot_dir)
