"""A pytest plugin: the seconds each test spends in JAX tracing, lowering and XLA
compiles, from ``jax.monitoring``'s duration events.

  PYTHONPATH=benchmarks JMETA_COMPILE_PROFILE=DIR \\
      python -m pytest -n 2 -q --durations=0 -p compile_profile | tee suite.log
  python benchmarks/suite_profile.py suite.log --compile=DIR --out=...

Each process (each xdist worker) writes ``DIR/compile_<worker>.json``:
``{nodeid: {'compile', 'trace', 'lower', 'compiles', 'hits', 'hit'}}``: seconds in
XLA compiles, tracing and lowering, the number of XLA compiles, and the number and
seconds of executables read from the persistent compilation cache instead (JAX's
backend-compile event times both). A test's seconds cover its setup, call and
teardown, as pytest's durations do; work outside any test (imports, collection) is
under ``OUTSIDE``. Subprocesses a test starts are not seen.

It also writes ``DIR/programs_<worker>.json``, one row per backend compile event:
``[test, name, cache key, seconds, 'compile' | 'hit' | 'uncached']``. The key is the
persistent cache's (a hash of the program, its compile options and versions), read
from JAX's own debug log line, so two rows of one name and different keys are two
programs: the same function at other shapes or constants.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import pathlib

import jax
import pytest

OUTSIDE = '<outside tests>'
EVENTS = {
  '/jax/core/compile/backend_compile_duration': 'compile',
  '/jax/core/compile/jaxpr_trace_duration': 'trace',
  '/jax/core/compile/jaxpr_to_mlir_module_duration': 'lower',
}

# JAX logs each persistent-cache lookup inside the backend-compile event it times.
CACHE_LOG = {
  'PERSISTENT COMPILATION CACHE MISS': 'compile',
  'Persistent compilation cache hit': 'hit',
}

_current = [OUTSIDE]
_sums: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
_programs: list[list] = []
_lookup: list = [None]  # (outcome, module name, key) of the last cache lookup


def record(event: str, duration: float, **kwargs) -> None:
  """The ``jax.monitoring`` listener: adds ``duration`` to the current test."""
  if (kind := EVENTS.get(event)) is None:
    return
  sums = _sums[_current[0]]
  if kind != 'compile':
    sums[kind] += duration
    return
  outcome, name, key = _lookup[0] or ('uncached', kwargs.get('fun_name'), None)
  _lookup[0] = None
  if outcome == 'hit':
    sums['hit'] += duration
    sums['hits'] += 1
  else:
    sums['compile'] += duration
    sums['compiles'] += 1
  _programs.append([_current[0], name, key, duration, outcome])


class _CacheLookups(logging.Filter):
  """Reads the lookup lines, then lets through only what the logger let through
  before it was opened to debug lines (so pytest does not capture those)."""

  def __init__(self, level: int):
    super().__init__()
    self.level = level

  def filter(self, record: logging.LogRecord) -> bool:
    for prefix, outcome in CACHE_LOG.items():
      if isinstance(record.msg, str) and record.msg.startswith(prefix):
        _lookup[0] = (outcome, *record.args)
    return record.levelno >= self.level


def programs() -> list[list]:
  """``[test, name, key, seconds, outcome]`` per backend compile event so far."""
  return list(_programs)


@contextlib.contextmanager
def charging(node: str):
  """Charges what compiles inside the block to ``node``."""
  _current[0] = node
  try:
    yield
  finally:
    _current[0] = OUTSIDE


def totals() -> dict[str, dict[str, float]]:
  """What has been recorded so far, per test."""
  return {node: dict(sums) for node, sums in _sums.items()}


jax.monitoring.register_event_duration_secs_listener(record)
_compiler_log = logging.getLogger('jax._src.compiler')
_compiler_log.addFilter(_CacheLookups(_compiler_log.getEffectiveLevel()))
_compiler_log.setLevel(logging.DEBUG)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  with charging(item.nodeid):
    yield


def pytest_sessionfinish(session):
  out = os.environ.get('JMETA_COMPILE_PROFILE')
  if not out:
    return
  path = pathlib.Path(out)
  path.mkdir(parents=True, exist_ok=True)
  worker = os.environ.get('PYTEST_XDIST_WORKER', 'main')
  (path / f'compile_{worker}.json').write_text(json.dumps(totals(), indent=0) + '\n')
  (path / f'programs_{worker}.json').write_text(json.dumps(programs(), indent=0) + '\n')
