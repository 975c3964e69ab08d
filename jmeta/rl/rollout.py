"""Rollouts with ``lax.scan``, batched over episodes and tasks with ``vmap``.

``rollout`` plays one episode; ``rollouts`` plays ``num_episodes`` independent
episodes of one task (vmapped); ``vmap`` it once more over a stacked batch of tasks
(``jmeta.rl.sample_tasks``) for a meta-batch. A rollout never differentiates
through the sampling: the trajectory is data (``jax.lax.stop_gradient``), and the
policy-gradient objectives recompute its log-probabilities from params.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.rl.environment import Environment, check_horizon
from jmeta.rl.policies import Policy
from jmeta.validation import check_positive_int


class Trajectory(NamedTuple):
  """Arrays with a leading time axis (and any batch axes before it).

  ``valid[t]`` is 1.0 for the steps taken before the episode ended and 0.0 after
  (a ``done`` at step t still counts step t), so padding steps carry no reward and
  no gradient.
  """

  observations: jax.Array  # (..., T, *observation_shape): o_t, seen before a_t
  actions: jax.Array  # (..., T, *action_shape)
  rewards: jax.Array  # (..., T)
  valid: jax.Array  # (..., T) float


def rollout(
  env: Environment,
  policy: Policy,
  params: Any,
  task: Any,
  key: jax.Array,
  horizon: int | None = None,
) -> Trajectory:
  """One episode of ``horizon`` steps (default ``env.horizon``) of ``policy``."""
  horizon = check_horizon(env.horizon if horizon is None else horizon)
  reset_key, action_key = jax.random.split(key)
  state, observation = env.reset(task, reset_key)

  def one_step(carry, step_key):
    state, observation, alive = carry
    action = policy.sample(params, observation, step_key)
    state, next_observation, reward, done = env.step(task, state, action)
    valid = alive.astype(reward.dtype)
    out = (observation, action, reward * valid, valid)
    return (state, next_observation, alive & ~done), out

  _, (observations, actions, rewards, valid) = jax.lax.scan(
    one_step,
    (state, observation, jnp.array(True)),
    jax.random.split(action_key, horizon),
  )
  return jax.lax.stop_gradient(Trajectory(observations, actions, rewards, valid))


def rollouts(
  env: Environment,
  policy: Policy,
  params: Any,
  task: Any,
  key: jax.Array,
  num_episodes: int,
  horizon: int | None = None,
) -> Trajectory:
  """``num_episodes`` independent episodes of one task: arrays ``(episodes, T, ...)``."""
  num_episodes = check_positive_int(num_episodes, 'num_episodes')
  keys = jax.random.split(key, num_episodes)
  return jax.vmap(lambda k: rollout(env, policy, params, task, k, horizon))(keys)


def episode_returns(trajectories: Trajectory) -> jax.Array:
  """The undiscounted return of each episode (summed over the time axis)."""
  return jnp.sum(trajectories.rewards, axis=-1)
