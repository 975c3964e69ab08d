"""Validators for the arguments of jmeta's public functions.

Each returns the value in canonical form or raises a ``ValueError`` that names the
argument, what it got and what it expects. They run where a factory is called or a
function is traced, never inside compiled code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _is_int(value: Any) -> bool:
  return not isinstance(value, (bool, np.bool_)) and isinstance(
    value, (int, np.integer)
  )


def check_steps(steps: Any, name: str = 'steps') -> int:
  """Returns ``steps`` as an ``int`` if it is a non-negative integer, else raises."""
  if not _is_int(steps):
    raise ValueError(
      f'{name} must be a non-negative Python int (it is static: it fixes the '
      f'length of the lax.scan); got {steps!r} of type {type(steps).__name__}.'
    )
  if steps < 0:
    raise ValueError(f'{name} must be >= 0, got {steps}.')
  return int(steps)


def check_positive_int(value: Any, name: str) -> int:
  """Returns ``value`` as an ``int`` if it is an integer >= 1, else raises."""
  if not _is_int(value) or value < 1:
    raise ValueError(
      f'{name} must be a positive int (Python or NumPy), got {value!r} of type '
      f'{type(value).__name__}.'
    )
  return int(value)


def check_positive_real(value: Any, name: str, *, allow_zero: bool = False) -> float:
  """Returns ``value`` as a ``float`` if it is finite and > 0 (>= 0 with allow_zero)."""
  real = isinstance(value, (int, float, np.integer, np.floating))
  if isinstance(value, (bool, np.bool_)) or not real or not math.isfinite(value):
    raise ValueError(
      f'{name} must be a finite Python or NumPy real number, got {value!r} of '
      f'type {type(value).__name__}.'
    )
  if value < 0 or (value == 0 and not allow_zero):
    bound = '>= 0' if allow_zero else '> 0'
    raise ValueError(f'{name} must be {bound}, got {value}.')
  return float(value)


def check_bool(value: Any, name: str) -> bool:
  """Returns ``value`` if it is a Python bool, else raises."""
  if not isinstance(value, bool):
    raise ValueError(f'{name} must be True or False, got {value!r}.')
  return value


def check_choice(value: Any, choices: tuple, name: str) -> Any:
  """Returns ``value`` if it is one of ``choices``, else raises naming them."""
  if value not in choices:
    raise ValueError(f'unknown {name} {value!r}; expected one of {choices}.')
  return value


def check_n_way(n_way: Any) -> int:
  """Returns ``n_way`` if it is an int >= 2 (a static class count), else raises."""
  if not _is_int(n_way) or n_way < 2:
    raise ValueError(
      f'n_way must be an int >= 2 (a static class count), got {n_way!r}.'
    )
  return int(n_way)
