"""Omniglot meta-learning: MAML, first-order MAML and Reptile.

  python -m experiments.omniglot.main --workdir=runs/maml_5w1s \
      --config=experiments/omniglot/configs/maml.py:5w1s [--config.num_iterations=2000]

Re-running with the same --workdir resumes from its latest checkpoint. On a CPU the
meta-batch is sharded over one XLA host device per core (``--cpu_devices``), which
ran meta-updates faster than one device using every core
(``benchmarks/results/cpu_meta_step.md``).

What the command line checks and does besides:

- **An unknown or misplaced override** (``--config.n_way=7`` where the field is
  ``config.data.n_way``) stops with the fields that exist at that level and the
  closest field names, instead of ml_collections' ``AttributeError: "'n_way'"``.
- **Overrides that leave a dependent setting behind.** The configs derive some fields
  from the setting (``5w1s``, ...): the inner learning rate is MAML's per-class rate
  times N, MAML's query count equals K, and the 20-way settings use other meta-batch
  sizes and step counts. Overriding ``data.n_way`` or ``data.k_shot`` does not
  recompute them; the runner **warns** (absl ``logging.warning``) naming each such
  field, its value and the value a fresh config would have, and the override that
  sets it. It does not change them itself: a run uses exactly the values its command
  line shows.
- **Ctrl-C (SIGINT) or ``kill`` (SIGTERM)** at any point, compilation included, exits
  with status 130 after waiting for a checkpoint being written, and prints how to
  resume: the same command with the same ``--workdir``. It exits with ``os._exit``:
  JAX compiles on a worker thread and hands the interrupt to Python before that
  compile ends, so the normal interpreter teardown would destroy the XLA client under
  the running compile and crash with a segmentation fault. SIGTERM takes the same path because a shell starts
  a background job with SIGINT ignored, so ``kill PID`` is how such a run is stopped.
"""

from __future__ import annotations

import difflib
import gc
import logging as std_logging
import os
import pathlib
import re
import shlex
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints and metrics.'
)
config_flags.DEFINE_config_file(
  'config',
  None,
  'Config file, e.g. experiments/omniglot/configs/maml.py:5w1s.',
  lock_config=True,
)
_CPU_DEVICES = flags.DEFINE_integer(
  'cpu_devices',
  0,
  'XLA host devices to split the CPU into when JAX runs on it; the meta-batch is '
  'sharded over them. 0: one per core; 1: a single device. No effect on GPU or TPU.',
)
flags.mark_flags_as_required(['workdir', 'config'])

COMMAND = 'python -m experiments.omniglot.main'
SETTINGS = ('5w1s', '5w5s', '20w1s', '20w5s')  # as experiments/omniglot/configs/base.py
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def cpu_devices(flag: int) -> int:
  """The host device count for ``--cpu_devices``: ``flag``, or one per core for 0."""
  if flag < 0:
    raise app.UsageError(f'--cpu_devices must be >= 0, got {flag}.')
  return flag or os.cpu_count() or 1


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
  argv: list[str], load_config: Callable[[str], Any]
) -> str | None:
  """The first ``--config.<field>`` in ``argv`` that names no field, explained."""
  config_arg = None
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
    message = bad_override_message(argv, flags.FLAGS['config'].parser.parse)
    if message is None:
      raise
    sys.stderr.write(
      f'FATAL Flags parsing error: {message}\n'
      'Pass --helpshort or --helpfull to see help on flags.\n'
    )
    sys.exit(1)


# --- Overrides that leave a dependent setting behind --------------------------------


def _get(config: ml_collections.ConfigDict, path: str) -> Any:
  for part in path.split('.'):
    if not _is_group(config) or part not in config:
      return None
    config = config[part]
  return config


def _leaf_paths(config: ml_collections.ConfigDict) -> list[str]:
  return [p for p in field_paths(config) if not _is_group(_get(config, p))]


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def dependent_setting_warnings(
  config: ml_collections.ConfigDict,
  overrides: Mapping[str, Any],
  load: Callable[[str | None], ml_collections.ConfigDict | None],
  config_file: str = '<config file>',
) -> list[str]:
  """Warnings for fields the config derives from ``data.n_way``/``data.k_shot``.

  Args:
    config: the config after the command-line overrides.
    overrides: the overridden fields, dotted path to value.
    load: ``load(setting)`` is a fresh config from the same file for a setting such
      as ``'20w1s'`` (``None``: the file's own argument), or ``None`` if that fails.
    config_file: the config file's path, for the suggested command.

  With an ``n_way``/``k_shot`` pair that is one of the shipped settings, the fresh
  config of that setting is the reference: every field it sets differently is named.
  Otherwise a changed ``n_way`` is reported with the inner learning rate that keeps
  MAML's per-class rate alpha = rate / N (SGD inner loops only; Adam is invariant to
  the loss scale), and fields that the config sets equal to ``n_way`` or ``k_shot``
  in every setting are named.
  """
  base = load(None)
  if base is None or _get(base, 'data.n_way') is None:
    return []
  changed = [
    f
    for f in ('data.n_way', 'data.k_shot')
    if f in overrides and _get(config, f) != _get(base, f)
  ]
  if not changed:
    return []
  n_old, k_old = base.data.n_way, base.data.k_shot
  n_new, k_new = config.data.n_way, config.data.k_shot
  given = ' '.join(f'--config.{f}={_get(config, f)}' for f in changed)
  new_setting = f'{n_new}w{k_new}s'
  fresh = load(new_setting) if new_setting in SETTINGS else None
  if fresh is not None:
    differ = [
      f'{p}={_get(fresh, p)!r} (here {_get(config, p)!r})'
      for p in _leaf_paths(fresh)
      if p not in overrides and _get(config, p) != _get(fresh, p)
    ]
    if not differ:
      return []
    return [
      f'{given} runs {new_setting} episodes with the other settings of '
      f'{base.get("setting", "the config")!r}; a fresh {new_setting} config sets '
      f'{", ".join(differ)}. Use --config={config_file}:{new_setting} for the '
      f'settings the config chooses for {new_setting}, or override these fields.'
    ]

  messages = []
  rate = base.get('inner_learning_rate', 0.0)
  if (
    'data.n_way' in changed
    and 'inner_learning_rate' not in overrides
    and config.get('inner_optimizer') == 'sgd'
    and rate > 0
  ):
    scaled = rate * n_new / n_old
    messages.append(
      f'{given} keeps inner_learning_rate={rate:g}, the value the config chose for '
      f"{n_old}-way. jmeta's inner loss is a mean over the N*K support examples, so "
      f"MAML's per-class rate (alpha, for its loss summed over the N classes) is "
      f'rate / N: {rate / n_old:g} at {n_old}-way, {rate / n_new:g} at {n_new}-way '
      f'(the configs set rate = alpha * N). Pass --config.inner_learning_rate='
      f'{scaled:g} to keep alpha, or --config.inner_learning_rate={rate:g} to keep '
      'the rate and silence this warning.'
    )
  derived = (
    ('data.n_way', n_old, n_new, f'{20 if n_old == 5 else 5}w{k_old}s'),
    ('data.k_shot', k_old, k_new, f'{n_old}w{5 if k_old == 1 else 1}s'),
  )
  for field, old, new, other_setting in derived:
    if field not in changed:
      continue
    other = load(other_setting) if other_setting in SETTINGS else None
    if other is None:
      continue
    for path in _leaf_paths(base):
      if path in overrides or path in ('data.n_way', 'data.k_shot'):
        continue
      value = _get(base, path)
      if _is_int(value) and value == old and _get(other, path) == _get(other, field):
        messages.append(
          f'{given} keeps {path}={value}, which the config sets equal to {field}; a '
          f'fresh config would have {path}={new}: pass --config.{path}={new} to keep '
          'them equal.'
        )
  return messages


def _warn_about_dependent_settings() -> None:
  flag = flags.FLAGS['config']
  try:
    filename = flag.config_filename
    overrides = flag.override_values
  except Exception:  # noqa: BLE001 -- the warning is a courtesy, never a failure
    return
  path, _, argument = filename.partition(':')

  def load(setting: str | None):
    target = (
      path if setting is None and not argument else f'{path}:{setting or argument}'
    )
    try:
      return flag.parser.parse(target)
    except Exception:  # noqa: BLE001 -- a config file without the setting argument
      return None

  for message in dependent_setting_warnings(flag.value, overrides, load, path):
    logging.warning('%s', message)


# --- Interrupts ---------------------------------------------------------------------


def _exit_now(signum=None, frame=None) -> NoReturn:
  del signum, frame
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


def resume_hint(workdir: str | None, argv: list[str]) -> str:
  """What to run to continue an interrupted run, with its latest checkpoint."""
  command = f'{COMMAND} {shlex.join(argv[1:])}'.rstrip()
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
  del signum, frame
  raise KeyboardInterrupt


def exit_interrupted(workdir: str | None) -> NoReturn:
  """Finishes pending writes, prints the resume hint, exits 130 without teardown."""
  signal.signal(signal.SIGINT, _exit_now)  # a second Ctrl-C: exit at once
  signal.signal(signal.SIGTERM, _exit_now)
  _finish_pending_writes()
  sys.stdout.flush()
  sys.stderr.write('\n' + resume_hint(workdir, sys.argv) + '\n')
  sys.stderr.flush()
  # Not sys.exit: a compile can still be running on XLA's worker thread, and the
  # interpreter's teardown would free the client under it (segmentation fault).
  os._exit(INTERRUPTED_EXIT_CODE)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  _warn_about_dependent_settings()
  import jax  # noqa: PLC0415 -- after the flags, so --help and their errors are fast

  from experiments.omniglot import train  # noqa: PLC0415

  # Before anything touches a JAX backend; the CPU platform only.
  jax.config.update('jax_num_cpu_devices', cpu_devices(_CPU_DEVICES.value))
  train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  signal.signal(signal.SIGTERM, _interrupt)
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:  # anywhere: flags, imports, compiles, steps, evaluation
    exit_interrupted(_WORKDIR.value if flags.FLAGS.is_parsed() else None)
