"""Progress bars on a terminal; plain progress lines in a log file.

``progress_bar(...)`` returns a tqdm bar when stderr is a terminal. Otherwise (a run
under ``nohup``, a job scheduler, a test) a bar's carriage returns would only clutter
the log, so it logs a plain line instead, through absl, at most every
``interval_s`` seconds and once at the end::

  test 5-way: 600/600 episodes (100%), 12.3 s, 48.8 episodes/s
  meta-training: 2500/60000 steps (4%), 1210.4 s, 2.07 steps/s, about 7.7 h left
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import tqdm
from absl import logging


def on_terminal() -> bool:
  stream = sys.stderr
  return bool(getattr(stream, 'isatty', None) and stream.isatty())


def duration(seconds: float) -> str:
  """``seconds`` in the largest unit that keeps it above 1 (s, min, h, days)."""
  for unit, size in (('days', 86400), ('h', 3600), ('min', 60)):
    if seconds >= size:
      return f'{seconds / size:.1f} {unit}'
  return f'{seconds:.1f} s'


class ProgressLine:
  """tqdm's interface (iterate, ``update``, ``set_postfix``, ``close``), logging a
  plain line at most every ``interval_s`` seconds and when it closes."""

  def __init__(
    self,
    iterable: Iterable | None = None,
    *,
    total: int,
    initial: int = 0,
    desc: str = '',
    unit: str = 'it',
    interval_s: float = 60.0,
  ):
    self.iterable, self.total, self.n = iterable, total, initial
    self.desc, self.unit, self.interval_s = desc, unit, interval_s
    self._initial = initial
    self._start = self._last = time.monotonic()
    self._postfix = ''
    self._closed = False

  def __iter__(self):
    for item in self.iterable:
      yield item
      self.update()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def set_postfix(self, **values) -> None:
    self._postfix = ', '.join(f'{k} {v}' for k, v in values.items())

  def update(self, n: int = 1) -> None:
    self.n += n
    now = time.monotonic()
    if now - self._last >= self.interval_s and self.n < self.total:
      self._last = now
      self._log()

  def close(self) -> None:
    if not self._closed:
      self._closed = True
      self._log()

  def line(self) -> str:
    seconds = time.monotonic() - self._start
    done = self.n - self._initial
    parts = [
      f'{self.desc}: {self.n}/{self.total} {self.unit}s '
      f'({100 * self.n / max(self.total, 1):.0f}%)',
      duration(seconds),
    ]
    if done > 0 and seconds > 0:
      parts.append(f'{done / seconds:.3g} {self.unit}s/s')
      if self.n < self.total:
        left = (self.total - self.n) * seconds / done
        parts.append(f'about {duration(left)} left')
    if self._postfix:
      parts.append(self._postfix)
    return ', '.join(parts)

  def _log(self) -> None:
    logging.info('%s', self.line())


def progress_bar(
  iterable: Iterable | None = None,
  *,
  total: int,
  initial: int = 0,
  desc: str = '',
  unit: str = 'it',
  leave: bool = True,
  interval_s: float = 60.0,
):
  """A tqdm bar on a terminal, a ``ProgressLine`` elsewhere (see the module doc)."""
  if on_terminal():
    return tqdm.tqdm(
      iterable, total=total, initial=initial, desc=desc, unit=unit, leave=leave
    )
  return ProgressLine(
    iterable, total=total, initial=initial, desc=desc, unit=unit, interval_s=interval_s
  )
