"""jmeta/xla_workarounds.py: which jaxlib versions get the YNNPACK flag, and that the
crashing reproduction runs once the fusions are off."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

from jmeta import xla_workarounds as xw

BUGS = pathlib.Path(__file__).parent / 'xla_bugs'
REPRO = BUGS / 'ynn_segfault.py'


@pytest.mark.parametrize(
  'version, flags, expected',
  [
    ('0.10.2', '', True),
    ('0.11.0', '--xla_force_host_platform_device_count=2', True),
    # An unaffected version never gets the flag (XLA aborts on unknown flags).
    ('0.10.1', '', False),
    ('0.12.0', '', False),
    # The user's own setting of the flag wins, whatever its value.
    ('0.10.2', '--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT', False),
  ],
)
def test_needs_ynn_flag(version, flags, expected):
  assert xw.needs_ynn_flag(version, flags) is expected


def test_disable_appends_to_existing_flags_and_only_once(monkeypatch):
  monkeypatch.setattr(jaxlib, '__version__', '0.10.2')
  monkeypatch.setattr(xw, '_backends_started', lambda: False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_dump_to=/tmp/x')
  assert xw.disable_ynn_fusions()
  assert os.environ['XLA_FLAGS'] == (
    '--xla_dump_to=/tmp/x --xla_cpu_experimental_ynn_fusion_type='
  )
  assert not xw.disable_ynn_fusions()  # already there: left alone
  assert os.environ['XLA_FLAGS'].count('ynn') == 1


def test_disable_warns_when_backends_already_started(monkeypatch):
  monkeypatch.setattr(jaxlib, '__version__', '0.10.2')
  monkeypatch.setattr(xw, '_backends_started', lambda: True)
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  with pytest.warns(RuntimeWarning, match='before any JAX computation'):
    assert not xw.disable_ynn_fusions()
  assert 'XLA_FLAGS' not in os.environ


def test_import_jmeta_leaves_xla_flags_alone():
  """The fusions stay on by default (off, MAML's CPU step is slower:
  benchmarks/results/cpu_ynn_fusion.md)."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  code = 'import jmeta, os; print(repr(os.environ.get("XLA_FLAGS")))'
  proc = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == 'None'


def test_reproduction_runs_with_the_fusions_off():
  """The pure-JAX reproduction (a segfault on jaxlib 0.10.2 with AVX-512) runs in a
  process that called disable_ynn_fusions first."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  code = (
    'from jmeta import xla_workarounds; xla_workarounds.disable_ynn_fusions(); '
    f'import runpy; runpy.run_path({str(REPRO)!r}, run_name="__main__")'
  )
  proc = subprocess.run(
    [sys.executable, '-c', code],
    capture_output=True,
    text=True,
    timeout=300,
    env={**env, 'JAX_PLATFORMS': 'cpu'},
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith('ok ')


def _solve_lower(a, b):
  return jax.scipy.linalg.solve_triangular(a, b, lower=True)


@pytest.mark.parametrize(
  'fn, args',
  [
    (jnp.linalg.solve, lambda a: (a, a[..., 0])),
    (jnp.linalg.cholesky, lambda a: (a,)),
    (_solve_lower, lambda a: (jnp.linalg.cholesky(a), a[..., :2])),
  ],
  ids=['solve', 'cholesky', 'solve_triangular'],
)
def test_one_matrix_at_a_time_loops_under_vmap_with_the_same_values_and_gradients(
  fn, args, lapack_batch_dims
):
  m = jax.random.normal(jax.random.key(0), (5, 6, 6))
  spd = m @ jnp.swapaxes(m, -1, -2) + 6 * jnp.eye(6)
  looped = xw.one_matrix_at_a_time(fn)
  # The plain function makes one batched call, the wrapped one a call per matrix.
  assert set(lapack_batch_dims(jax.vmap(fn), *args(spd))) == {1}
  assert set(lapack_batch_dims(jax.vmap(looped), *args(spd))) == {0}
  # Matrix by matrix the same LAPACK routine: the same values to the bit.
  np.testing.assert_array_equal(
    jax.jit(jax.vmap(looped))(*args(spd)), jax.jit(jax.vmap(fn))(*args(spd))
  )
  # Derivatives are fn's own (reverse mode through vmap included).
  loss = lambda f: lambda a: jnp.sum(jnp.sin(jax.vmap(f)(*args(a))))  # noqa: E731
  np.testing.assert_allclose(
    jax.jit(jax.grad(loss(looped)))(spd),
    jax.jit(jax.grad(loss(fn)))(spd),
    rtol=1e-6,
    atol=1e-7,
  )


def test_lapack_reproduction_finishes_one_matrix_at_a_time():
  """Eight concurrent batched solves hang jaxlib 0.10.2 on a 2-core machine
  (``xla_bugs/lapack_deadlock.py``, not run here: it never returns); looped, the
  same program finishes."""
  proc = subprocess.run(
    [sys.executable, str(BUGS / 'lapack_deadlock.py'), '--looped'],
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith('ok ')
