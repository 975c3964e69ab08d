"""The command line every experiment shares.

Each experiment's ``main.py`` is ``run_experiment`` (or, with flags of its own,
``define_flags`` then ``run``), which gives it:

- ``--workdir`` (required) and ``--config`` (a config file, with ``--config.<field>``
  overrides, locked so a misspelled field cannot be added);
- **an unknown or misplaced override** (``--config.n_way=7`` where the field is
  ``config.data.n_way``) stops with the fields that exist at that level and the
  closest field names, instead of ml_collections' ``AttributeError: "'n_way'"``;
- **Ctrl-C (SIGINT) or ``kill`` (SIGTERM)** at any point, compilation included, exits
  with status 130 after waiting for a checkpoint being written, and prints how to
  resume: the same command with the same ``--workdir``. It exits with ``os._exit``:
  JAX compiles on a worker thread and hands the interrupt to Python before that
  compile ends, so the normal interpreter teardown would destroy the XLA client under
  the running compile and crash with a segmentation fault. SIGTERM takes the same
  path because a shell starts a background job with SIGINT ignored, so ``kill PID``
  is how such a run is stopped. An interrupt that something drops (a bare
  ``except:`` in JAX's tracing, a garbage-collector callback) is delivered again.
"""

from __future__ import annotations

import difflib
import functools
import gc
import logging as std_logging
import math
import os
import pathlib
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def define_flags(
  default_config: str | None, workdir_help: str, config_help: str = 'Config file.'
) -> flags.FlagHolder:
  """Defines ``--workdir`` (required) and ``--config``; returns the workdir flag.

  ``default_config=None`` makes ``--config`` required too.
  """
  workdir = flags.DEFINE_string('workdir', None, workdir_help)
  try:
    config_flags.DEFINE_config_file(
      'config', default_config, config_help, lock_config=True
    )
  except (AttributeError, KeyError):
    # With a default file, ml_collections applies sys.argv's overrides here.
    parser = ConfigFileFlagParser(name='config')
    message = bad_override_message(sys.argv, parser.parse, default_config)
    if message is None:
      raise
    _fatal_flag_error(message)
  flags.mark_flags_as_required(
    ['workdir'] if default_config is not None else ['workdir', 'config']
  )
  return workdir


def train_main(
  train_and_evaluate: Callable[[ml_collections.ConfigDict, str], Any],
  workdir: flags.FlagHolder,
) -> Callable[[list[str]], None]:
  """An absl ``main`` that calls ``train_and_evaluate(config, workdir)``."""

  def main(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    logging.set_verbosity(logging.INFO)
    train_and_evaluate(flags.FLAGS.config, workdir.value)

  return main


def run_experiment(
  package: str,
  train_and_evaluate: Callable[[ml_collections.ConfigDict, str], Any],
  default_config: str,
  workdir_help: str = 'Directory for checkpoints, metrics, results and plots.',
) -> NoReturn:
  """The whole ``main.py`` of an experiment package such as ``experiments.mann``.

  Defines the flags (``default_config`` is a file in the package's ``configs/``)
  and runs ``train_and_evaluate(config, workdir)`` under ``run``.
  """
  module = sys.modules[package]
  configs = pathlib.Path(module.__file__).parent / 'configs'
  workdir = define_flags(str(configs / default_config), workdir_help)
  run(f'python -m {package}.main', train_main(train_and_evaluate, workdir), workdir)


def run(
  program: str, main: Callable[[list[str]], None], workdir: flags.FlagHolder
) -> NoReturn:
  """``app.run(main)`` (which exits) with override errors and interrupts handled.

  ``program`` starts the resume command printed on an interrupt, e.g.
  ``python -m experiments.mann.main``.
  """
  signal.signal(signal.SIGTERM, _interrupt)
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored
    signal.signal(signal.SIGINT, _interrupt)
  _start_redelivery()
  default_hook = sys.unraisablehook
  sys.unraisablehook = functools.partial(_redeliver_swallowed_interrupt, default_hook)
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:  # anywhere: flags, imports, compiles, steps, evaluation
    exit_interrupted(program, workdir.value if flags.FLAGS.is_parsed() else None)
  finally:  # the run has ended: an interrupt during the teardown changes nothing
    sys.unraisablehook = default_hook


# --- Unknown and misplaced overrides ------------------------------------------------


def _is_group(value: Any) -> bool:
  return isinstance(value, ml_collections.ConfigDict)


def field_paths(config: ml_collections.ConfigDict, prefix: str = '') -> list[str]:
  """Every field's dotted path, groups included, e.g. ``['data', 'data.n_way', ...]``."""
  paths = []
  for name in sorted(config.keys()):
    paths.append(prefix + name)
    if _is_group(config[name]):
      paths.extend(field_paths(config[name], f'{prefix}{name}.'))
  return paths


def closest_fields(config: ml_collections.ConfigDict, path: str) -> list[str]:
  """Existing fields that ``path`` most likely meant (difflib), best first."""
  # Not the groups the path already goes through (data for data.nway).
  paths = [p for p in field_paths(config) if not path.startswith(p + '.')]
  name = path.rsplit('.', 1)[-1]
  same_name = [p for p in paths if p.rsplit('.', 1)[-1] == name and p != path]
  if same_name:  # the right field in the wrong group, e.g. n_way for data.n_way
    return same_name
  by_name: dict[str, list[str]] = {}
  for p in paths:
    by_name.setdefault(p.rsplit('.', 1)[-1], []).append(p)
  found = difflib.get_close_matches(path, paths, n=3, cutoff=0.6)
  for close in difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.6):
    found += by_name[close]
  return list(dict.fromkeys(found))[:3]


def _describe_fields(group: ml_collections.ConfigDict) -> str:
  parts = []
  for name in sorted(group.keys()):
    if _is_group(group[name]):
      parts.append(f'{name}.{{{", ".join(sorted(group[name].keys()))}}}')
    else:
      parts.append(name)
  return ', '.join(parts)


def unknown_override_message(
  config: ml_collections.ConfigDict, path: str
) -> str | None:
  """Why ``--config.<path>`` names no field of ``config``, or ``None`` if it does."""
  node, walked = config, []
  for part in path.split('.'):
    part = re.sub(r'\[.*\]$', '', part)  # an index, as in eval.test_episodes[0]
    if not _is_group(node):
      where = '.'.join(['config', *walked])
      return (
        f'--config.{path}: {where} is a value ({node!r}), not a group of fields; '
        f'set it with --config.{".".join(walked)}=...'
      )
    if part not in node:
      where = '.'.join(['config', *walked])
      close = closest_fields(config, path)
      if close:
        options = ' or '.join(f'--config.{p}' for p in close)
        hint = f'Did you mean {options}?'
      else:
        hint = 'No field has a similar name.'
      return (
        f'--config.{path}: {where} has no field {part!r}. {hint} The fields of '
        f'{where} are: {_describe_fields(node)}.'
      )
    node, walked = node[part], [*walked, part]
  return None


_OVERRIDE = re.compile(r'^--?(?:no)?config\.([^=]+)')
_CONFIG_ARG = re.compile(r'^--?config=(.*)$')


def bad_override_message(
  argv: list[str],
  load_config: Callable[[str], Any],
  default_config: str | None = None,
) -> str | None:
  """The first ``--config.<field>`` in ``argv`` that names no field, explained.

  The config is the ``--config`` file in ``argv``, else ``default_config``.
  """
  config_arg = default_config
  for i, arg in enumerate(argv):
    if match := _CONFIG_ARG.match(arg):
      config_arg = match.group(1)
    elif arg in ('--config', '-config') and i + 1 < len(argv):
      config_arg = argv[i + 1]
  if config_arg is None:
    return None
  try:
    config = load_config(config_arg)
  except Exception:  # noqa: BLE001 -- then the original error stands
    return None
  if not _is_group(config):
    return None
  for arg in argv:
    if match := _OVERRIDE.match(arg):
      message = unknown_override_message(config, match.group(1))
      if message:
        return message
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with unknown ``--config.*`` fields explained (exit 1)."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):  # what ml_collections raises for a bad path
    flag = flags.FLAGS['config']
    default = flag.default_as_str and flag.default_as_str.strip('\'"')
    message = bad_override_message(argv, flag.parser.parse, default or None)
    if message is None:
      raise
    _fatal_flag_error(message)


def _fatal_flag_error(message: str) -> NoReturn:
  sys.stderr.write(
    f'FATAL Flags parsing error: {message}\n'
    'Pass --helpshort or --helpfull to see help on flags.\n'
  )
  sys.exit(1)


# --- Interrupts ---------------------------------------------------------------------


class _Received:
  """The interrupt this process received and has not yet exited for.

  Signals are per process, so this is too. Each counter has one writer (``sent``
  the redelivery thread, ``handled`` the main thread), so no update is lost.
  """

  signum: int | None = None  # the first SIGINT or SIGTERM
  raised_at = 0.0  # time.monotonic() when a handler last raised it
  exiting = False  # exit_interrupted has begun: deliver nothing more
  sent = 0  # redeliveries sent
  handled = 0  # redeliveries whose handler has run


_REDELIVER_AFTER_S = 1.0
_POLL_S = 0.1
_redelivery: list[threading.Thread] = []


def _exit_now(signum=None, frame=None) -> None:
  del signum, frame
  if _Received.sent > _Received.handled:  # a redelivery sent just before exiting
    _Received.handled += 1
    return
  sys.stderr.write(
    '\nInterrupted again: exiting without waiting for the checkpoint being written; '
    'the one before it is intact.\n'
  )
  sys.stderr.flush()
  os._exit(INTERRUPTED_EXIT_CODE)


def _finish_pending_writes() -> None:
  """Waits for checkpoints being written (orbax saves asynchronously), flushes logs."""
  ocp = sys.modules.get('orbax.checkpoint')  # loaded only if the run got that far
  if ocp is not None:
    managers = [o for o in gc.get_objects() if isinstance(o, ocp.CheckpointManager)]
    for manager in managers:
      try:
        manager.wait_until_finished()
        # A signal that interrupted orbax's own wait (Thread.join) can leave its
        # finalize thread marked as stopped while it still writes (CPython's
        # handling of bpo-45274), and the wait above then returns at once.
        saving = getattr(manager, 'is_saving_in_progress', lambda: False)
        while saving():
          time.sleep(0.05)
      except Exception as e:  # noqa: BLE001 -- report and exit anyway
        sys.stderr.write(f'waiting for a checkpoint write failed: {e!r}\n')
  for handler in (
    std_logging.getLogger().handlers + std_logging.getLogger('absl').handlers
  ):
    try:
      handler.flush()
    except Exception:  # noqa: BLE001, S110 -- best effort on the way out
      pass


def latest_checkpoint_step(workdir: str | pathlib.Path) -> int | None:
  """The newest complete checkpoint's step in ``workdir`` (orbax's step folders)."""
  directory = pathlib.Path(workdir) / 'checkpoints'
  if not directory.is_dir():
    return None
  steps = [int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()]
  return max(steps, default=None)


def resume_hint(program: str, workdir: str | None, argv: list[str]) -> str:
  """What to run to continue an interrupted run, with its latest checkpoint.

  ``program`` is how the command starts, e.g. ``python -m experiments.mann.main``.
  """
  command = f'{program} {shlex.join(argv[1:])}'.rstrip()
  if workdir is None:
    return f'Interrupted. Run again with: {command}'
  step = latest_checkpoint_step(workdir)
  if step is None:
    where = 'No checkpoint was written yet; the same command starts the run again'
  else:
    where = (
      f'The last checkpoint is step {step} in {pathlib.Path(workdir) / "checkpoints"}; '
      'the same command resumes from it'
    )
  return (
    f'Interrupted. {where} (same --workdir, same config and overrides):\n  {command}'
  )


def _interrupt(signum, frame) -> NoReturn:
  del frame
  if _Received.sent > _Received.handled:
    _Received.handled += 1
  if _Received.signum is None:
    _Received.signum = signum
  _Received.raised_at = time.monotonic()
  raise KeyboardInterrupt(signum)


def _start_redelivery() -> None:
  """Starts the thread that delivers an interrupt again until the run exits for it.

  A signal's handler raises ``KeyboardInterrupt`` in whatever Python code the main
  thread is in, and some code drops it: JAX's tracing has bare ``except:`` clauses,
  and an exception raised in a garbage-collector callback (JAX registers one), a
  ``__del__`` or a weakref callback is printed as "Exception ignored" and dropped.
  The run would go on for hours after Ctrl-C or ``kill``. So until the run begins
  to exit, this thread sends the signal to the main thread again whenever it has
  gone ``_REDELIVER_AFTER_S`` seconds without handling a ``KeyboardInterrupt``
  (one being handled is on its way out through ``finally`` blocks, which a second
  one would cut short). It is started here, not in the handler, which can run
  while the main thread holds ``threading``'s own locks.
  """
  if _redelivery:
    return
  main = threading.main_thread().ident

  def redeliver() -> None:
    while not _Received.exiting:
      time.sleep(_POLL_S)
      due = time.monotonic() - _Received.raised_at >= _REDELIVER_AFTER_S
      if _Received.signum is None or _Received.exiting or not due:
        continue
      _Received.raised_at = time.monotonic()  # the next look, a wait later
      if not _handling_an_interrupt(main):
        _Received.sent += 1
        signal.pthread_kill(main, _Received.signum)

  _redelivery.append(threading.Thread(target=redeliver, daemon=True))
  _redelivery[0].start()


def _handling_an_interrupt(thread: int) -> bool:
  """Whether ``thread`` is in an ``except`` or ``finally`` block of a
  ``KeyboardInterrupt`` (Python 3.11 reports an exc_info tuple, 3.12 the error)."""
  current = sys._current_exceptions().get(thread)  # noqa: SLF001 -- no public twin
  error = current[1] if isinstance(current, tuple) else current
  return isinstance(error, KeyboardInterrupt)


def _redeliver_swallowed_interrupt(
  default_hook: Callable[[Any], None], unraisable: Any
) -> None:
  """Has an interrupt that Python would print and drop delivered again at once.

  It was raised in a garbage-collector callback, a ``__del__`` or a weakref
  callback; the redelivery thread sends it again once the main thread has left
  that callback (sent from here, it would be handled inside this hook, and dropped).
  """
  error = unraisable.exc_value
  if isinstance(error, KeyboardInterrupt):
    if _Received.signum is None:  # raised by Python's own SIGINT handler
      _Received.signum = error.args[0] if error.args else signal.SIGINT
    _Received.raised_at = -math.inf
    return
  default_hook(unraisable)


def exit_interrupted(program: str, workdir: str | None) -> NoReturn:
  """Finishes pending writes, prints the resume hint, exits 130 without teardown."""
  _Received.exiting = True
  signal.signal(signal.SIGINT, _exit_now)  # a second Ctrl-C: exit at once
  signal.signal(signal.SIGTERM, _exit_now)
  _finish_pending_writes()
  sys.stdout.flush()
  sys.stderr.write('\n' + resume_hint(program, workdir, sys.argv) + '\n')
  sys.stderr.flush()
  # Not sys.exit: a compile can still be running on XLA's worker thread, and the
  # interpreter's teardown would free the client under it (segmentation fault).
  os._exit(INTERRUPTED_EXIT_CODE)
