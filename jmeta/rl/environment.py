"""The environment interface: a task family of pure ``reset`` and ``step`` functions.

An ``Environment`` is a NamedTuple of pure functions, in the shape of gymnax and
brax: nothing is stored in an object, so ``jax.vmap`` over tasks and over
environments and ``lax.scan`` over time simply work.

* ``sample_task(key) -> task``: a task (a pytree of arrays: a goal, arm means, an
  MDP's tables) drawn from the family's prior.
* ``reset(task, key) -> (state, observation)``.
* ``step(task, state, action) -> (state, observation, reward, done)``. A
  stochastic environment carries its PRNG key in ``state``, so ``step`` needs none.
  ``done`` is True from the step that ends the episode on; a rollout masks the
  steps after it (``jmeta.rl.rollout``).

Every ``step`` checks the action's shape and dtype at trace time (a ``ValueError``
naming what it expected), so a wrong action fails before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.validation import check_positive_int


class Environment(NamedTuple):
  """A task family with pure ``reset`` and ``step`` (see the module doc).

  Attributes:
    name: for logs and reports.
    sample_task: ``sample_task(key) -> task``.
    reset: ``reset(task, key) -> (state, observation)``.
    step: ``step(task, state, action) -> (state, observation, reward, done)``.
    observation_shape: the shape of one observation.
    action_shape: the shape of one action: ``()`` for a discrete action.
    num_actions: the number of discrete actions; None for continuous actions.
    horizon: the episode length of the family's protocol (a rollout may be
      given another).
  """

  name: str
  sample_task: Callable[[jax.Array], Any]
  reset: Callable[[Any, jax.Array], tuple[Any, jax.Array]]
  step: Callable[[Any, Any, jax.Array], tuple[Any, jax.Array, jax.Array, jax.Array]]
  observation_shape: tuple[int, ...]
  action_shape: tuple[int, ...]
  num_actions: int | None
  horizon: int


def sample_tasks(env: Environment, key: jax.Array, num_tasks: int) -> Any:
  """``num_tasks`` tasks of ``env``, stacked on a leading axis (a pure function of
  ``key``)."""
  num_tasks = check_positive_int(num_tasks, 'num_tasks')
  return jax.vmap(env.sample_task)(jax.random.split(key, num_tasks))


def check_continuous_action(action: Any, shape: tuple[int, ...], env: str) -> jax.Array:
  """``action`` as a float array if it has ``shape`` (one environment's action);
  raises ``ValueError`` otherwise. Runs at trace time."""
  action = jnp.asarray(action)
  if tuple(action.shape) != tuple(shape):
    raise ValueError(
      f'{env}.step takes one action of shape {tuple(shape)}, got shape '
      f'{tuple(action.shape)}; step a batch of environments with jax.vmap.'
    )
  if not jnp.issubdtype(action.dtype, jnp.floating):
    raise ValueError(
      f'{env}.step takes a floating-point action, got dtype {action.dtype}.'
    )
  return action


def check_discrete_action(action: Any, env: str) -> jax.Array:
  """``action`` if it is an integer scalar (one environment's action); raises
  ``ValueError`` otherwise. Its range is not checked (it is a traced value)."""
  action = jnp.asarray(action)
  if action.shape != ():
    raise ValueError(
      f'{env}.step takes one integer action of shape (), got shape '
      f'{tuple(action.shape)}; step a batch of environments with jax.vmap.'
    )
  if not jnp.issubdtype(action.dtype, jnp.integer):
    raise ValueError(f'{env}.step takes an integer action, got dtype {action.dtype}.')
  return action


def check_horizon(horizon: Any) -> int:
  """``horizon`` as an int if it is a positive integer; raises ``ValueError``."""
  if isinstance(horizon, (int, np.integer)) and not isinstance(horizon, bool):
    if horizon < 1:
      raise ValueError(
        f'horizon must be at least 1 step, got {horizon}; an episode of zero '
        'steps has no return.'
      )
  return check_positive_int(horizon, 'horizon')
