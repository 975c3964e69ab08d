"""Shared fixtures for the core test suite."""

import os

import jax
import pytest


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """Shares compiled XLA executables between tests, xdist workers and notebook kernels.

  Many tests compile the same tiny Omniglot step and evaluation; JAX's persistent
  cache (keyed by the HLO, flags and versions) compiles each once per run. The
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
