"""Omniglot meta-learning: MAML, first-order MAML and Reptile.

  python -m experiments.omniglot.main --workdir=runs/maml_5w1s \
      --config=experiments/omniglot/configs/maml.py:5w1s [--config.num_iterations=2000]

Re-running with the same --workdir resumes from its latest checkpoint. On a CPU the
meta-batch is sharded over one XLA host device per core (``--cpu_devices``), which
ran meta-updates faster than one device using every core
(``benchmarks/results/cpu_meta_step.md``).

Besides what every experiment's command line does (``experiments/common/cli.py``:
unknown ``--config.*`` fields explained, Ctrl-C or ``kill`` exits after the checkpoint
being written and prints the resume command), this one warns about:

- **Overrides that leave a dependent setting behind.** The configs derive some fields
  from the setting (``5w1s``, ...): the inner learning rate is MAML's per-class rate
  times N, MAML's query count equals K, and the 20-way settings use other meta-batch
  sizes and step counts. Overriding ``data.n_way`` or ``data.k_shot`` does not
  recompute them; the runner **warns** (absl ``logging.warning``) naming each such
  field, its value and the value a fresh config would have, and the override that
  sets it. It does not change them itself: a run uses exactly the values its command
  line shows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import app, flags, logging

from experiments.common import cli

_WORKDIR = cli.define_flags(
  None,
  'Directory for checkpoints and metrics.',
  'Config file, e.g. experiments/omniglot/configs/maml.py:5w1s.',
)
_CPU_DEVICES = flags.DEFINE_integer(
  'cpu_devices',
  0,
  'XLA host devices to split the CPU into when JAX runs on it; the meta-batch is '
  'sharded over them. 0: one per core; 1: a single device. No effect on GPU or TPU.',
)

COMMAND = 'python -m experiments.omniglot.main'
SETTINGS = ('5w1s', '5w5s', '20w1s', '20w5s')  # as experiments/omniglot/configs/base.py


def cpu_devices(flag: int) -> int:
  """The host device count for ``--cpu_devices``: ``flag``, or one per core for 0."""
  if flag < 0:
    raise app.UsageError(f'--cpu_devices must be >= 0, got {flag}.')
  return flag or os.cpu_count() or 1


# --- Overrides that leave a dependent setting behind --------------------------------


def _is_group(value: Any) -> bool:
  return isinstance(value, ml_collections.ConfigDict)


def _get(config: ml_collections.ConfigDict, path: str) -> Any:
  for part in path.split('.'):
    if not _is_group(config) or part not in config:
      return None
    config = config[part]
  return config


def _leaf_paths(config: ml_collections.ConfigDict) -> list[str]:
  return [p for p in cli.field_paths(config) if not _is_group(_get(config, p))]


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
  cli.run(COMMAND, main, _WORKDIR)
