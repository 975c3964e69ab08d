"""A pytest plugin: the seconds each test spends in JAX tracing, lowering and XLA
compiles, from ``jax.monitoring``'s duration events.

  PYTHONPATH=benchmarks JMETA_COMPILE_PROFILE=DIR \\
      python -m pytest -n 2 -q --durations=0 -p compile_profile | tee suite.log
  python benchmarks/suite_profile.py suite.log --compile=DIR --out=...

Each process (each xdist worker) writes ``DIR/compile_<worker>.json``:
``{nodeid: {'compile', 'trace', 'lower', 'compiles'}}``, seconds and the number of
XLA compiles (persistent-cache hits are not compiles). A test's seconds cover its
setup, call and teardown, as pytest's durations do; work outside any test (imports,
collection) is under ``OUTSIDE``. Subprocesses a test starts are not seen.
"""

from __future__ import annotations

import collections
import contextlib
import json
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

_current = [OUTSIDE]
_sums: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


def record(event: str, duration: float, **kwargs) -> None:
  """The ``jax.monitoring`` listener: adds ``duration`` to the current test."""
  if (kind := EVENTS.get(event)) is not None:
    sums = _sums[_current[0]]
    sums[kind] += duration
    sums['compiles'] += kind == 'compile'


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
