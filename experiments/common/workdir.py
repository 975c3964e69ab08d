"""Workdir handling that never overwrites a user's earlier outputs."""

from __future__ import annotations

import json
import pathlib


def prepare_workdir(
  workdir: str | pathlib.Path, outputs: tuple[str, ...]
) -> pathlib.Path:
  """Creates ``workdir``; refuses if any of ``outputs`` already exists in it."""
  path = pathlib.Path(workdir)
  existing = [name for name in outputs if (path / name).exists()]
  if existing:
    raise FileExistsError(
      f'{path} already holds {", ".join(existing)} from an earlier run; jmeta does '
      'not overwrite results. Pass a new --workdir, or move the old one away.'
    )
  path.mkdir(parents=True, exist_ok=True)
  return path


def completed_result(
  workdir: str | pathlib.Path, num_iterations: int | None
) -> pathlib.Path | None:
  """The result of a run finished at ``num_iterations`` or later (None: any length),
  or stopped early before it.

  Runs write ``test_step<N>.json`` (Omniglot; ``early_stopping.stopped`` in it when
  validation ended the run at N) or ``results.json`` with the ``updates`` trained
  (MANN, the copy task) or the ``iterations`` (neural processes).
  """
  least = num_iterations or 0
  done = []
  for path in pathlib.Path(workdir).glob('test_step*.json'):
    step = path.stem.removeprefix('test_step')
    if step.isdigit() and (int(step) >= least or _stopped_early(path)):
      done.append((int(step), path))
  results = pathlib.Path(workdir) / 'results.json'
  if results.exists():
    record = json.loads(results.read_text())
    updates = record.get('updates', record.get('iterations'))
    if isinstance(updates, int) and updates >= least:
      done.append((updates, results))
  return max(done)[1] if done else None


def _stopped_early(path: pathlib.Path) -> bool:
  return bool(json.loads(path.read_text()).get('early_stopping', {}).get('stopped'))


class JsonlWriter:
  """Appends one JSON object per line; flushed after every write."""

  def __init__(self, path: str | pathlib.Path):
    self._file = open(path, 'a')  # noqa: SIM115 -- closed in close()

  def write(self, record: dict) -> None:
    self._file.write(json.dumps(record, sort_keys=True) + '\n')
    self._file.flush()

  def close(self) -> None:
    self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
