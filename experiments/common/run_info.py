"""What a run needs to record so that its numbers can be traced: hardware, versions."""

from __future__ import annotations

import datetime
import os
import platform
import sys

import jax


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


def run_info() -> dict:
  """Hardware, software and command of the current process, as a JSON-able dict."""
  devices = jax.devices()
  return {
    'date_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds'
    ),
    'command': command_line(),
    'backend': jax.default_backend(),
    'devices': [str(d.device_kind) for d in devices],
    'cpu': cpu_model(),
    'cpu_count': os.cpu_count(),
    'python': platform.python_version(),
    'jax': jax.__version__,
    'platform': platform.platform(),
  }


def hardware_label(info: dict) -> str:
  """A short hardware description for results tables."""
  if info['backend'] == 'cpu':
    return f'{info["cpu"]}, {info["cpu_count"]} cores (CPU)'
  return f'{info["devices"][0]} ({info["backend"]})'
