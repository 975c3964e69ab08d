"""Sinusoid regression tasks (Finn et al., 2017, Sec. 5.1).

A task is y = A sin(x - b) with amplitude A ~ U[0.1, 5], phase b ~ U[0, pi] and
inputs x ~ U[-5, 5]. Sampling is a pure function of a PRNG key.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.tasks.batch import TaskBatch


class SinusoidParams(NamedTuple):
  amplitude: jax.Array  # (tasks,)
  phase: jax.Array  # (tasks,)


class SinusoidTasks(NamedTuple):
  """A sinusoid task family.

  Attributes:
    sample: ``sample(key, num_tasks) -> TaskBatch`` with inputs ``(tasks, n, 1)``.
    sample_params: ``sample_params(key, num_tasks) -> SinusoidParams``.
    tasks_from_params: ``(key, params) -> TaskBatch`` for given amplitudes/phases.
  """

  sample: callable
  sample_params: callable
  tasks_from_params: callable


def sinusoid_function(params: SinusoidParams, x: jax.Array) -> jax.Array:
  """y = A sin(x - b), broadcasting ``params`` over the example axes of ``x``."""
  a = params.amplitude.reshape(params.amplitude.shape + (1,) * (x.ndim - 1))
  b = params.phase.reshape(params.phase.shape + (1,) * (x.ndim - 1))
  return a * jnp.sin(x - b)


def sinusoid_tasks(
  num_support: int = 5,
  num_query: int = 10,
  *,
  amplitude: tuple[float, float] = (0.1, 5.0),
  phase: tuple[float, float] = (0.0, math.pi),
  x_range: tuple[float, float] = (-5.0, 5.0),
  dtype=jnp.float32,
) -> SinusoidTasks:
  """The sinusoid family with ``num_support``-shot support and separate query sets."""
  for name, n in (('num_support', num_support), ('num_query', num_query)):
    if not isinstance(n, int) or n < 1:
      raise ValueError(f'{name} must be a positive int, got {n!r}.')
  for name, (lo, hi) in (
    ('amplitude', amplitude),
    ('phase', phase),
    ('x_range', x_range),
  ):
    if not lo <= hi:
      raise ValueError(f'{name} range must have low <= high, got {(lo, hi)}.')

  def sample_params(key: jax.Array, num_tasks: int) -> SinusoidParams:
    ka, kb = jax.random.split(key)
    return SinusoidParams(
      jax.random.uniform(ka, (num_tasks,), dtype, *amplitude),
      jax.random.uniform(kb, (num_tasks,), dtype, *phase),
    )

  def tasks_from_params(key: jax.Array, params: SinusoidParams) -> TaskBatch:
    num_tasks = params.amplitude.shape[0]
    x = jax.random.uniform(
      key, (num_tasks, num_support + num_query, 1), dtype, *x_range
    )
    y = sinusoid_function(params, x)
    return TaskBatch(
      x[:, :num_support], y[:, :num_support], x[:, num_support:], y[:, num_support:]
    )

  def sample(key: jax.Array, num_tasks: int) -> TaskBatch:
    kp, kx = jax.random.split(key)
    return tasks_from_params(kx, sample_params(kp, num_tasks))

  return SinusoidTasks(sample, sample_params, tasks_from_params)
