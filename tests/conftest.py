"""Shared fixtures for the core test suite."""

import os
import re

import jax
import pytest


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """Shares compiled XLA executables between tests, xdist workers and notebook kernels.

  Many tests compile the same tiny Omniglot step and evaluation; JAX's persistent
  cache (keyed by the HLO, flags and versions) compiles each once per run. (Cheaper
  compiles are not an option: ``XLA_FLAGS=--xla_backend_optimization_level=0``
  halved a compile-bound file's time on jaxlib 0.10.2's CPU, but made the metric
  learners' meta-loss non-finite at step 0 and failed 23 tests; level 1 saved
  nothing.) The
  directory is this run's pytest temp dir (the parent of the per-worker dirs under
  xdist), so nothing outlives pytest's own temp-dir retention.
  """
  base = tmp_path_factory.getbasetemp()
  if 'PYTEST_XDIST_WORKER' in os.environ:
    base = base.parent
  path = str(base / 'jax-compilation-cache')
  # Subprocesses (notebook kernels, multi-device runs) read these at import.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = path
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.5'
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  yield


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats enabled; restores the setting afterwards."""
  with jax.enable_x64(True):
    yield


@pytest.fixture
def lapack_batch_dims():
  """``(fn, *args) -> [int]``: the batch dimensions of each LAPACK call that
  ``jax.jit(fn)`` lowers to on CPU (``num_batch_dims`` of its custom calls); 0 for
  a one-matrix call, as ``jmeta.xla_workarounds.one_matrix_at_a_time`` makes them."""

  def batch_dims(fn, *args):
    text = jax.jit(fn).lower(*args).as_text()
    calls = [line for line in text.splitlines() if 'custom_call @lapack_' in line]
    assert calls, 'no LAPACK call in the lowered program'
    return [int(re.search(r'num_batch_dims = "(\d+)"', c).group(1)) for c in calls]

  return batch_dims
