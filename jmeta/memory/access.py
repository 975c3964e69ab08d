"""The memory-access interface shared by LRUA and NTM memories, and its argument checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jmeta.validation import check_positive_int, check_positive_real


class MemoryAccess(NamedTuple):
  """A memory and its heads as two pure functions, in the shape of optax's transforms.

  Attributes:
    init: ``init(dtype=jnp.float32) -> state``, the memory before an episode.
    update: ``update(state, *head_outputs) -> (reads, state)``: one time step's
      writes and reads; ``reads`` is ``(read_heads, width)``.
  """

  init: Callable[..., Any]
  update: Callable[..., tuple[jax.Array, Any]]


def check_memory_sizes(memory_slots: Any, memory_width: Any) -> tuple[int, int]:
  """``(memory_slots, memory_width)`` as ints if both are positive ints, else raises."""
  return (
    check_positive_int(memory_slots, 'memory_slots'),
    check_positive_int(memory_width, 'memory_width'),
  )


def check_gamma(gamma: Any) -> float:
  """Returns the usage decay ``gamma`` as a float if it is in (0, 1], else raises."""
  gamma = check_positive_real(gamma, 'gamma')
  if gamma > 1:
    raise ValueError(
      f'gamma (the usage decay of LRUA) must be in (0, 1], got {gamma}; Santoro et '
      'al. (2016) use 0.95.'
    )
  return gamma


def check_heads_fit(heads: int, memory_slots: int, what: str) -> None:
  if heads > memory_slots:
    raise ValueError(
      f'{what}={heads} exceeds memory_slots={memory_slots}: LRUA writes to the '
      f'{what} least-used slots, so use at most memory_slots heads.'
    )


def check_head_outputs(name: str, value: Any, shape: tuple[int, ...]) -> None:
  if np.shape(value) != shape:
    raise ValueError(f'{name} must have shape {shape}, got {np.shape(value)}.')
