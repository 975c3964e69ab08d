"""What the TFDS-backed loaders (``omniglot``, ``mnist``) share: where prepared
datasets live, a lock so parallel workers prepare them once, the import of
tensorflow-datasets and the image features of a builder.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

TFDS_DATA_DIR_ENV = 'JMETA_TFDS_DATA_DIR'


def resolve_data_dir(data_dir: str | None) -> str:
  """``data_dir``, else ``$JMETA_TFDS_DATA_DIR``, else ``$TFDS_DATA_DIR``, else
  ``~/tensorflow_datasets``, as an absolute path."""
  data_dir = data_dir or os.environ.get(TFDS_DATA_DIR_ENV)
  data_dir = data_dir or os.environ.get('TFDS_DATA_DIR')
  data_dir = data_dir or os.path.join('~', 'tensorflow_datasets')
  return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def local_folder(given: str | None, env_var: str) -> str | None:
  """The absolute path of ``given``, else of ``$env_var``; None if neither is set."""
  folder = given if given is not None else os.environ.get(env_var)
  return os.path.abspath(os.path.expanduser(os.fspath(folder))) if folder else None


def prepared_path(
  data_dir: str | None, builder: str, version: str, filename: str
) -> str:
  """Where a loader caches the prepared arrays of ``builder`` at ``version``."""
  return os.path.join(
    resolve_data_dir(data_dir), f'{builder}_arrays', version, filename
  )


def read_arrays(
  path: str, keys: tuple[str, ...], dataset: str, error: type[Exception]
) -> dict[str, np.ndarray]:
  """The arrays ``keys`` of the ``.npz`` cache at ``path``; an unreadable cache
  raises ``error`` and is never replaced."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      return {key: npz[key] for key in keys}
  except Exception as e:
    raise error(
      f'cannot read the {dataset} cache {path}: {e}. It was not overwritten; '
      'delete it to rebuild it.'
    ) from e


def write_arrays(path: str, **arrays: np.ndarray) -> None:
  """Writes ``arrays`` to the ``.npz`` at ``path`` atomically; an existing file
  (another worker's) is kept."""
  folder = os.path.dirname(path)
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.npz')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    try:
      os.link(tmp, path)  # atomic, and fails rather than replacing a file
    except FileExistsError:
      pass
    except OSError:  # no hard links on this filesystem
      if not os.path.exists(path):
        os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


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


def import_tfds(dataset: str, extra: str = '') -> Any:
  """``tensorflow_datasets``, or an ``ImportError`` naming what preparing ``dataset``
  needs installed (tensorflow-datasets, tensorflow and ``extra``)."""
  try:
    import tensorflow_datasets as tfds
  except ImportError as error:
    needs = ', '.join(['tensorflow-datasets', 'tensorflow', *filter(None, [extra])])
    raise ImportError(
      f"Preparing {dataset} needs {needs}: pip install 'jmeta[data]'."
    ) from error
  return tfds


def image_features(tfds: Any, size: int, **fields: Any) -> Any:
  """A builder's features: a ``size x size`` uint8 ``image`` and ``fields``."""
  image = tfds.features.Tensor(shape=(size, size), dtype=np.uint8)
  return tfds.features.FeaturesDict({'image': image, **fields})


def load_or_prepare(
  path: str,
  read: Callable[[str], Any],
  prepare: Callable[[], Any],
  write: Callable[[str, Any], None],
) -> Any:
  """``read(path)`` if the cache exists; else ``prepare()`` under a lock beside it,
  ``write(path, data)``, and the data. A worker that waited for the lock reads what
  another prepared instead of preparing it again."""
  if os.path.exists(path):
    return read(path)
  with file_lock(path + '.lock'):
    if os.path.exists(path):
      return read(path)
    data = prepare()
    write(path, data)
  return data
