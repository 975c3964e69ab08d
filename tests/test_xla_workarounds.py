"""jmeta/xla_workarounds.py: which jaxlib versions get the YNNPACK flag, and that the
crashing reproduction runs once jmeta is imported."""

import os
import pathlib
import subprocess
import sys

import jaxlib
import pytest

from jmeta import xla_workarounds as xw

REPRO = pathlib.Path(__file__).parent / 'xla_bugs' / 'ynn_segfault.py'


@pytest.mark.parametrize(
  'version, flags, opt_out, expected',
  [
    ('0.10.2', '', '', True),
    ('0.11.0', '--xla_force_host_platform_device_count=2', '', True),
    # An unaffected version never gets the flag (XLA aborts on unknown flags).
    ('0.10.1', '', '', False),
    ('0.12.0', '', '', False),
    # The user's own setting of the flag wins, whatever its value.
    (
      '0.10.2',
      '--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT',
      '',
      False,
    ),
    ('0.10.2', '', '1', False),
    ('0.10.2', '', '0', True),
  ],
)
def test_needs_ynn_workaround(version, flags, opt_out, expected):
  assert xw.needs_ynn_workaround(version, flags, opt_out) is expected


def test_apply_appends_to_existing_flags_and_only_once(monkeypatch):
  monkeypatch.setattr(jaxlib, '__version__', '0.10.2')
  monkeypatch.setattr(xw, '_backends_started', lambda: False)
  monkeypatch.setenv('XLA_FLAGS', '--xla_dump_to=/tmp/x')
  monkeypatch.delenv(xw.OPT_OUT, raising=False)
  assert xw.apply_workarounds()
  assert os.environ['XLA_FLAGS'] == (
    '--xla_dump_to=/tmp/x --xla_cpu_experimental_ynn_fusion_type='
  )
  assert not xw.apply_workarounds()  # already there: left alone
  assert os.environ['XLA_FLAGS'].count('ynn') == 1


def test_apply_warns_when_backends_already_started(monkeypatch):
  monkeypatch.setattr(jaxlib, '__version__', '0.10.2')
  monkeypatch.setattr(xw, '_backends_started', lambda: True)
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  monkeypatch.delenv(xw.OPT_OUT, raising=False)
  with pytest.warns(RuntimeWarning, match='Import jmeta before running any'):
    assert not xw.apply_workarounds()
  assert 'XLA_FLAGS' not in os.environ


def _run(code: str, env_extra: dict) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', xw.OPT_OUT)}
  return subprocess.run(
    [sys.executable, '-c', code],
    capture_output=True,
    text=True,
    timeout=300,
    env={**env, **env_extra, 'JAX_PLATFORMS': 'cpu'},
  )


def test_reproduction_runs_after_import_jmeta():
  """The pure-JAX reproduction (a segfault on jaxlib 0.10.2 with AVX-512) runs in a
  process that imported jmeta first."""
  code = (
    'import jmeta, runpy, os; '
    f'runpy.run_path({str(REPRO)!r}, run_name="__main__"); '
    'print(os.environ.get("XLA_FLAGS", ""))'
  )
  proc = _run(code, {})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.startswith('ok ')
  assert (xw.YNN_FLAG in proc.stdout) == (jaxlib.__version__ in xw.AFFECTED_JAXLIB)
