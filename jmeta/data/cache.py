"""Where prepared datasets live, and a lock so parallel workers prepare them once.

Shared by the TFDS-backed loaders (``omniglot``, ``mnist``).
"""

from __future__ import annotations

import contextlib
import os

TFDS_DATA_DIR_ENV = 'JMETA_TFDS_DATA_DIR'


def resolve_data_dir(data_dir: str | None) -> str:
  """``data_dir``, else ``$JMETA_TFDS_DATA_DIR``, else ``$TFDS_DATA_DIR``, else
  ``~/tensorflow_datasets``, as an absolute path."""
  data_dir = data_dir or os.environ.get(TFDS_DATA_DIR_ENV)
  data_dir = data_dir or os.environ.get('TFDS_DATA_DIR')
  data_dir = data_dir or os.path.join('~', 'tensorflow_datasets')
  return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


@contextlib.contextmanager
def file_lock(path: str):
  """An exclusive advisory lock (POSIX ``flock``), so parallel workers prepare once."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'a+') as handle:
    try:
      import fcntl
    except ImportError:  # Windows: rely on the atomic writes alone.
      yield
      return
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(handle, fcntl.LOCK_UN)
