"""Orbax checkpoints that resume exactly and refuse an incompatible config."""

from __future__ import annotations

import copy
import json
import logging
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import flax.serialization
import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from experiments import runs

CONFIG_FILE = 'config.json'
STATE = 'default'
PROGRESS = 'progress'


def _committed_as(template: Any, restored: Any) -> Any:
  """``restored``, uncommitted where ``template`` is an uncommitted array.

  Orbax commits what it restores to its device, and jit lowers a committed argument
  with its sharding: a resumed state would compile (and look up in the persistent
  compilation cache) another program than the fresh state it continues.
  """
  if (
    isinstance(template, jax.Array)
    and not template.committed
    and not jax.dtypes.issubdtype(template.dtype, jax.dtypes.extended)  # PRNG keys
  ):
    return jax.numpy.asarray(jax.device_get(restored))
  return restored


class CheckpointConfigMismatchError(ValueError):
  """The workdir's checkpoints were written under a different config."""


def _flatten(d: dict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict):
      out.update(_flatten(v, key + '.'))
    else:
      out[key] = list(v) if isinstance(v, tuple) else v
  return out


def with_added_fields(config: dict, added_fields: Mapping[str, Any]) -> dict:
  """A copy of a run's recorded ``config`` (nested dicts) with each dotted field of
  ``added_fields`` that it lacks set to its value there, the value the run trained
  with (as ``check_compatible`` reads it); fields it has are kept."""
  config = copy.deepcopy(config)
  for path, value in added_fields.items():
    *groups, field = path.split('.')
    group = config
    for name in groups:
      group = group.setdefault(name, {})
    group.setdefault(field, value)
  return config


def check_compatible(
  saved: dict,
  current: dict,
  may_differ: Iterable[str] = (),
  added_fields: Mapping[str, Any] | None = None,
) -> None:
  """Raises ``CheckpointConfigMismatchError`` naming every field that differs.

  Fields in ``may_differ`` (dotted names, or prefixes ending in '.') are ignored:
  they change what is logged or evaluated, not the training trajectory. A field of
  ``added_fields`` (dotted name -> value) that the saved config lacks was added to
  the config since: it matches only at that value, the one the saved run trained
  with.
  """
  may_differ = tuple(may_differ)
  added_fields = dict(added_fields or {})
  a, b = _flatten(saved), _flatten(current)
  diffs = []
  for key in sorted(set(a) | set(b)):
    if any(key == m or (m.endswith('.') and key.startswith(m)) for m in may_differ):
      continue
    if key not in a and key in added_fields and b.get(key) == added_fields[key]:
      continue
    if a.get(key, '<missing>') != b.get(key, '<missing>'):
      diffs.append(
        f'{key}: checkpoint has {a.get(key, "<missing>")!r}, config has '
        f'{b.get(key, "<missing>")!r}'
      )
  if diffs:
    raise CheckpointConfigMismatchError(
      'the checkpoints in this workdir were written under a different config, so '
      'they are not loaded:\n  '
      + '\n  '.join(diffs)
      + '\nUse a new --workdir, or pass the config the checkpoints were made with.'
    )


class _DropOrbaxInfo(logging.Filter):
  """Drops the INFO (and DEBUG) records logged from orbax's modules, and the
  tracebacks they log for an interrupt.

  Ctrl-C or ``kill`` while orbax waits for the last save logs "Save Finalize thread
  failed" with the ``KeyboardInterrupt``'s traceback; the save did not fail, and
  the runner says what was interrupted and how to resume.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    path = record.pathname.replace(os.sep, '/')
    if '/orbax/' not in path and not record.name.startswith('orbax'):
      return True
    interrupt = record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt)
    return record.levelno > logging.INFO and not interrupt


_DROP_ORBAX_INFO = _DropOrbaxInfo()


def quiet_orbax_logs(quiet: bool = True) -> None:
  """Silences orbax's INFO lines (about 10 per checkpoint) and its tracebacks of an
  interrupt; other warnings and errors still show.

  Orbax logs through absl's logger, so this filters that logger (and Python's
  ``orbax`` loggers) by the module a record comes from. ``quiet=False`` undoes it.
  """
  loggers = [logging.getLogger('absl'), logging.getLogger('orbax')]
  for logger in loggers:
    if quiet:
      logger.addFilter(_DROP_ORBAX_INFO)
    else:
      logger.removeFilter(_DROP_ORBAX_INFO)


class Checkpointer:
  """Saves and restores a training-state pytree under ``workdir/checkpoints``.

  The config is written to ``workdir/config.json`` on first use and compared with the
  current one whenever the workdir already has checkpoints.

  Each checkpoint may carry a small JSON ``progress`` record beside the state (what a
  resumed run needs to continue its records: training time so far, a partial metrics
  window), saved and made visible atomically with it. Checkpoints written before it
  existed restore with an empty progress record.

  It keeps the ``max_to_keep`` latest checkpoints; by default
  ``runs.checkpoints_to_keep(workdir)``: only the latest in a registered run's
  workdir, which carries it in git, else two.

  Orbax's INFO lines are silenced (``quiet_orbax_logs``) unless the environment sets
  ``JMETA_ORBAX_LOGS=1``.
  """

  def __init__(
    self,
    workdir: str | pathlib.Path,
    config: dict,
    *,
    max_to_keep: int | None = None,
    may_differ: Iterable[str] = (),
    added_fields: Mapping[str, Any] | None = None,
  ):
    self.workdir = pathlib.Path(workdir).absolute()
    if max_to_keep is None:
      max_to_keep = runs.checkpoints_to_keep(self.workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    config_path = self.workdir / CONFIG_FILE
    if config_path.exists():
      check_compatible(
        json.loads(config_path.read_text()), config, may_differ, added_fields
      )
    else:
      config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    quiet_orbax_logs(os.environ.get('JMETA_ORBAX_LOGS', '') in ('', '0'))
    self.directory = self.workdir / 'checkpoints'
    self._manager = ocp.CheckpointManager(
      self.directory,
      # 'default' is the item name of the single-item checkpoints written before
      # the progress record, so those still restore.
      item_names=(STATE, PROGRESS),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def resume(self, template: Any) -> tuple[Any, dict]:
    """(the latest state and its progress record), or (``template``, {}) if the
    workdir has no checkpoint yet."""
    if self.latest_step() is None:
      return template, {}
    state = self.restore(template)
    absl_logging.info('resumed from step %d', self.latest_step())
    return state, self.progress()

  def save(self, step: int, state: Any, progress: dict | None = None) -> None:
    items = {STATE: ocp.args.StandardSave(state)}
    if progress is not None:
      items[PROGRESS] = ocp.args.JsonSave(progress)
    self._manager.save(step, args=ocp.args.Composite(**items))

  def restore(self, template: Any, step: int | None = None) -> Any:
    """The state saved at ``step`` (default: the latest), shaped like ``template``.

    A NamedTuple state saved before fields were appended to its class (e.g.
    ``MetaTrainState.bad_labels``) restores into its leading fields; the appended
    ones keep the template's values, i.e. those of a freshly initialised state.
    """
    step = self.latest_step() if step is None else step
    try:
      return self._restore(template, step)
    except (ValueError, KeyError, TypeError) as error:
      fields = getattr(template, '_fields', None)
      if fields is None:
        raise
      for n in range(len(fields) - 1, 0, -1):
        head = {f: getattr(template, f) for f in fields[:n]}
        try:
          restored = self._restore(head, step)
        except (ValueError, KeyError, TypeError):
          continue
        return template._replace(**restored)
      raise error

  def _restore(self, template: Any, step: int) -> Any:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    restored = self._manager.restore(
      step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract)})
    )
    return jax.tree.map(_committed_as, template, restored[STATE])

  def progress(self, step: int | None = None) -> dict:
    """The progress record saved with ``step`` (default: the latest); {} if none."""
    step = self.latest_step() if step is None else step
    if step is None or not (self.directory / str(step) / PROGRESS).is_dir():
      return {}
    restored = self._manager.restore(
      step, args=ocp.args.Composite(**{PROGRESS: ocp.args.JsonRestore()})
    )
    return dict(restored[PROGRESS])

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def write_params(path: pathlib.Path, tree: Any) -> None:
  """A finished run's trained params (any pytree) as flax msgpack."""
  path.write_bytes(flax.serialization.to_bytes(jax.device_get(tree)))


def finished_params_file(path: pathlib.Path, run: str) -> pathlib.Path:
  """``path`` if it exists; else an error naming the ``run`` kind its folder is
  not a finished one of."""
  if not path.exists():
    raise FileNotFoundError(
      f'{path} does not exist: {path.parent} is not a finished {run} run '
      '(train_and_evaluate writes it with results.json).'
    )
  return path


def read_params(path: pathlib.Path, template: Any) -> Any:
  """What ``write_params`` wrote to ``path``, in ``template``'s structure."""
  return flax.serialization.from_bytes(template, path.read_bytes())
