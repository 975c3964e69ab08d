"""A run's record files, cut back to its checkpoint when it resumes.

A run that is stopped between two checkpoints and started again repeats the steps
after the last one. Everything it logged about those steps is dropped on resume, so
that each record file reads as if the run had never stopped:

- ``*.jsonl`` records with a ``step`` (``metrics.jsonl``, ``compare.jsonl``) keep
  those up to the checkpoint's step (``cut_jsonl``);
- TensorBoard's events are written again from the kept ``metrics.jsonl`` records into
  one fresh events file (``tensorboard_writer``), so TensorBoard never shows the
  repeated steps twice nor a second file;
- ``timing.jsonl`` has one line per stretch of training (``from_step``, ``to_step``,
  ``seconds``); a stretch that was stopped gets its line on resume, up to the
  checkpoint, from the progress record saved with that checkpoint (``cut_timing``).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import jax
import numpy as np


def read_jsonl(path: str | pathlib.Path) -> list[dict]:
  """The records of a JSON-lines file; [] if absent. A last line cut short by a
  killed process is skipped."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  records = []
  for line in path.read_text().splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return records


def write_jsonl(path: str | pathlib.Path, records: list[dict]) -> None:
  """Replaces ``path`` by ``records`` atomically (a kill leaves old or new)."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + '.tmp')
  tmp.write_text(''.join(json.dumps(r, sort_keys=True) + '\n' for r in records))
  os.replace(tmp, path)


def cut_jsonl(path: str | pathlib.Path, last_step: int) -> list[dict]:
  """Keeps the records of ``path`` whose ``step`` is at most ``last_step``.

  Returns the kept records. A missing file stays missing.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return []
  kept = [r for r in read_jsonl(path) if r.get('step', 0) <= last_step]
  write_jsonl(path, kept)
  return kept


def cut_timing(path: str | pathlib.Path, last_step: int, progress: dict) -> list[dict]:
  """``timing.jsonl`` as of the checkpoint at ``last_step``; returns its lines.

  Lines past the checkpoint are dropped. If no line ends at ``last_step``, the
  stretch that wrote that checkpoint was stopped before it could write its own
  line; it is added from ``progress['segment']`` (that stretch's start step and
  seconds up to the checkpoint), marked ``"stopped": true``.
  """
  path = pathlib.Path(path)
  lines = [t for t in read_jsonl(path) if t['to_step'] <= last_step]
  segment = progress.get('segment')
  if segment and last_step > 0 and not any(t['to_step'] == last_step for t in lines):
    lines.append(
      {
        'from_step': segment['from_step'],
        'to_step': last_step,
        'seconds': round(segment['seconds'], 1),
        'stopped': True,
        **{k: progress[k] for k in ('git_commit', 'git_dirty') if k in progress},
      }
    )
  if lines or path.exists():
    write_jsonl(path, lines)
  return lines


def tensorboard_writer(logdir: str | pathlib.Path, records: list[dict]):
  """A tensorboardX ``SummaryWriter`` on one fresh events file holding ``records``.

  Earlier events files in ``logdir`` are removed: ``records`` (a run's kept
  ``metrics.jsonl``) are the same scalars, written again, with wall times spaced
  as their ``elapsed_s``.
  """
  from tensorboardX import SummaryWriter

  logdir = pathlib.Path(logdir)
  if logdir.exists():
    for old in logdir.glob('events.out.tfevents.*'):
      old.unlink()
  writer = SummaryWriter(str(logdir))
  if records:
    end = records[-1].get('elapsed_s', 0.0)
    now = time.time()
    for record in records:
      walltime = now - (end - record.get('elapsed_s', end))
      add_scalars(writer, record, walltime=walltime)
    writer.flush()
  return writer


def add_scalars(writer, record: dict, walltime: float | None = None) -> None:
  """Every field of ``record`` but ``step`` as a scalar at ``record['step']``."""
  for k, v in record.items():
    if k != 'step':
      writer.add_scalar(k, v, record['step'], walltime=walltime)


def window_means(window: list[dict]) -> dict:
  """The mean of each metric over the steps of a logging window (one transfer from
  the device for the whole window)."""
  window = jax.device_get(window)
  return {k: float(np.mean([m[k] for m in window])) for k in window[0]}


def append_timing(
  path: str | pathlib.Path, from_step: int, to_step: int, seconds: float, code: dict
) -> float:
  """Adds the line of a stretch of training from ``from_step`` to ``to_step`` (none
  if it trained nothing) to ``timing.jsonl``; returns the seconds of all lines."""
  path = pathlib.Path(path)
  if to_step > from_step:
    with path.open('a') as f:
      line = {
        'from_step': from_step,
        'to_step': to_step,
        'seconds': round(seconds, 1),
      }
      f.write(json.dumps({**line, **code}, sort_keys=True) + '\n')
  return sum(t['seconds'] for t in read_jsonl(path))


def resume_records(workdir: str | pathlib.Path, step: int, progress: dict):
  """A resumed (or fresh) run's ``metrics.jsonl`` and ``timing.jsonl`` cut back to
  its checkpoint at ``step``; returns the seconds trained before it and a
  TensorBoard writer holding the kept metrics."""
  workdir = pathlib.Path(workdir)
  logged = cut_jsonl(workdir / 'metrics.jsonl', step)
  timing = cut_timing(workdir / 'timing.jsonl', step, progress)
  return sum(t['seconds'] for t in timing), tensorboard_writer(
    workdir / 'tensorboard', logged
  )
