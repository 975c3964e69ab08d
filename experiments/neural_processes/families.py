"""The task families of the neural-process experiment, as pure keyed functions.

Every family draws ``num_points`` noisy (GP) or exact (sinusoid) observations of
each task's function on device, inside ``jit``; a training or evaluation batch is
then a view of those points (``training_batch``, ``evaluation_batch``).

* ``gp_fixed``: GP with an RBF kernel of fixed length scale 0.4 and signal std 1
  (DeepMind's CNP notebook), noise std 0.02, x ~ U[-2, 2].
* ``gp_random``: length scale ~ U[0.1, 0.6] and signal std ~ U[0.1, 1] per task
  (the ANP notebook), otherwise as ``gp_fixed``.
* ``sinusoid``: ``jmeta.sinusoid_tasks``' family (amplitude ~ U[0.1, 5], phase ~
  U[0, pi], x ~ U[-5, 5], Finn et al., 2017), noiseless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

import jmeta
from jmeta import neural_processes as nps

FAMILIES = ('gp_fixed', 'gp_random', 'sinusoid')


class Family(NamedTuple):
  """``sample(key, num_tasks, num_points) -> (x, y, info)``: inputs and outputs
  ``(tasks, points, 1)`` and the tasks' own parameters (an ``RBFKernel`` per task
  for a GP family, ``SinusoidParams`` for the sinusoid); ``gp``: the
  ``GPTasks`` of a GP family (None for the sinusoid); ``x_range``: its inputs'."""

  name: str
  sample: Callable[[jax.Array, int, int], tuple[jax.Array, jax.Array, Any]]
  gp: nps.GPTasks | None
  x_range: tuple[float, float]


def make_family(data: ml_collections.ConfigDict) -> Family:
  """The family of ``config.data`` (its ``family`` field names it)."""
  if data.family not in FAMILIES:
    raise ValueError(f'config.data.family = {data.family!r} is not one of {FAMILIES}.')
  x_range = tuple(data.x_range)
  if data.family == 'sinusoid':
    tasks = jmeta.sinusoid_tasks(
      amplitude=tuple(data.amplitude), phase=tuple(data.phase), x_range=x_range
    )

    def sample(key, num_tasks, num_points):
      kp, kx = jax.random.split(key)
      params = tasks.sample_params(kp, num_tasks)
      x = jax.random.uniform(kx, (num_tasks, num_points, 1), jnp.float32, *x_range)
      return x, jmeta.tasks.sinusoid_function(params, x), params

    return Family(data.family, sample, None, x_range)

  def as_range(value):
    return tuple(value) if isinstance(value, (tuple, list)) else float(value)

  gp = nps.gp_tasks(
    length_scale=as_range(data.length_scale),
    signal_std=as_range(data.signal_std),
    noise_std=data.noise_std,
    x_range=x_range,
  )

  def sample(key, num_tasks, num_points):
    kk, kt = jax.random.split(key)
    kernels = gp.sample_kernels(kk, num_tasks)
    batch = gp.tasks_from_kernels(kt, kernels, num_points, num_points)
    return batch.query_inputs, batch.query_targets, kernels

  return Family(data.family, sample, gp, x_range)


def training_batch(
  x: jax.Array, y: jax.Array, num_context: int, targets_include_context: bool
) -> jmeta.TaskBatch:
  """The first ``num_context`` points as the context (support set); the targets
  (query set) are all points, as the neural-process papers train
  (``targets_include_context``), or the points after the context (MAML's query)."""
  start = 0 if targets_include_context else num_context
  return jmeta.TaskBatch(
    x[:, :num_context], y[:, :num_context], x[:, start:], y[:, start:]
  )


def evaluation_batch(
  x: jax.Array, y: jax.Array, num_context: int, pool: int
) -> jmeta.TaskBatch:
  """Context: the first ``num_context`` of the first ``pool`` points (nested over
  context sizes); targets: every point after the pool, the same for every context
  size and never a context point."""
  if not 0 < num_context <= pool < x.shape[1]:
    raise ValueError(
      f'need 0 < num_context ({num_context}) <= pool ({pool}) < points ({x.shape[1]}).'
    )
  return jmeta.TaskBatch(
    x[:, :num_context], y[:, :num_context], x[:, pool:], y[:, pool:]
  )
