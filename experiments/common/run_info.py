"""What a run needs to record so that its numbers can be traced: hardware, versions."""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import subprocess
import sys

import jax
import jaxlib
from absl import logging


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def command_line() -> str:
  """The command that started this process, as a user would type it."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  program = (
    f'python -m {spec.name}' if spec else f'python {os.path.relpath(sys.argv[0])}'
  )
  return ' '.join([program, *sys.argv[1:]])


REPOSITORY = pathlib.Path(__file__).parents[2]


def _git(*args: str, cwd: pathlib.Path) -> str | None:
  try:
    out = subprocess.run(
      ['git', *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() if out.returncode == 0 else None


def git_state(repository: str | pathlib.Path = REPOSITORY) -> dict:
  """``{'git_commit': HEAD's sha, 'git_dirty': bool}`` of the code that is running.

  ``git_dirty`` is true when files outside ``results/`` differ from that commit
  (modified, staged or untracked and not ignored); a run's own records under
  ``results/`` do not count. Both are empty (``''``, ``None``) outside a git
  repository or without git.
  """
  commit = _git('rev-parse', 'HEAD', cwd=pathlib.Path(repository))
  if not commit:
    return {'git_commit': '', 'git_dirty': None}
  status = _git(
    'status',
    '--porcelain',
    '--',
    '.',
    ':(exclude)results',
    cwd=pathlib.Path(repository),
  )
  return {'git_commit': commit, 'git_dirty': bool(status)}


def logged_git_state(repository: str | pathlib.Path = REPOSITORY) -> dict:
  """``git_state``, also written to the log, so that a run's log names its code."""
  code = git_state(repository)
  logging.info(
    'running from commit %s%s',
    code['git_commit'] or '(none: not a git checkout)',
    ' with uncommitted changes' if code['git_dirty'] else '',
  )
  return code


def run_info() -> dict:
  """Hardware, software and command of the current process, as a JSON-able dict."""
  devices = jax.devices()
  return {
    'date_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds'
    ),
    'command': command_line(),
    **git_state(),
    'backend': jax.default_backend(),
    'devices': [str(d.device_kind) for d in devices],
    'cpu': cpu_model(),
    'cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'jax': jax.__version__,
    'jaxlib': jaxlib.__version__,
    # Numerics and speed depend on XLA's flags, e.g. whether XLA:CPU's YNNPACK
    # fusions are off (jmeta/xla_workarounds.py).
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'platform': platform.platform(),
  }


def hardware_label(info: dict) -> str:
  """A short hardware description for results tables."""
  if info['backend'] == 'cpu':
    return f'{info["cpu"]}, {info["cpu_count"]} cores (CPU)'
  return f'{info["devices"][0]} ({info["backend"]})'
