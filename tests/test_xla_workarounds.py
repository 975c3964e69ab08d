"""jmeta/xla_workarounds.py: which jaxlib versions get the YNNPACK flag, and that the
crashing reproduction runs once the fusions are off."""

import os
import pathlib
import subprocess
import sys

import jaxlib
import pytest

from jmeta import xla_workarounds as xw

REPRO = pathlib.Path(__file__).parent / 'xla_bugs' / 'ynn_segfault.py'


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
