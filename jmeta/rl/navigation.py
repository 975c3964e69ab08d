"""2D navigation (Finn et al., 2017, Sec. 5.3): a point moves to an unseen goal.

The agent starts at the origin; its observation is its position; its action, a
velocity clipped to [-0.1, 0.1] on each axis, is added to the position; the reward
is minus the Euclidean distance from the new position to the goal, which is drawn
uniformly from [-0.5, 0.5]^2 per task; the episode lasts 100 steps, or ends when
the position is within 0.01 of the goal on both axes. These are the conventions of
the reference implementations (cbfinn/maml_rl's ``point_env_randgoal.py``, and
tristandeleu/pytorch-maml-rl's ``Navigation2DEnv``, which also clips the action).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.rl.environment import Environment, check_continuous_action, check_horizon
from jmeta.validation import check_positive_real


class NavigationTask(NamedTuple):
  goal: jax.Array  # (2,)


class NavigationState(NamedTuple):
  position: jax.Array  # (2,)
  done: jax.Array  # bool scalar


def navigation_2d(
  *,
  goal_range: float = 0.5,
  max_action: float = 0.1,
  goal_tolerance: float = 0.01,
  horizon: int = 100,
) -> Environment:
  """The 2D navigation family: goals uniform in [-goal_range, goal_range]^2.

  Example::

    env = jmeta.rl.navigation_2d()
    task = env.sample_task(jax.random.key(0))
    state, obs = env.reset(task, jax.random.key(1))
    state, obs, reward, done = env.step(task, state, jnp.array([0.1, -0.05]))
  """
  goal_range = check_positive_real(goal_range, 'goal_range')
  max_action = check_positive_real(max_action, 'max_action')
  goal_tolerance = check_positive_real(goal_tolerance, 'goal_tolerance')
  horizon = check_horizon(horizon)

  def sample_task(key: jax.Array) -> NavigationTask:
    return NavigationTask(
      jax.random.uniform(key, (2,), minval=-goal_range, maxval=goal_range)
    )

  def reset(task: NavigationTask, key: jax.Array):
    del key  # the start is always the origin
    position = jnp.zeros_like(task.goal)
    return NavigationState(position, jnp.array(False)), position

  def step(task: NavigationTask, state: NavigationState, action: jax.Array):
    action = check_continuous_action(action, (2,), 'navigation_2d')
    position = state.position + jnp.clip(action, -max_action, max_action)
    offset = position - task.goal
    reward = -jnp.sqrt(jnp.sum(offset**2))
    done = state.done | jnp.all(jnp.abs(offset) < goal_tolerance)
    return NavigationState(position, done), position, reward, done

  return Environment(
    name='navigation_2d',
    sample_task=sample_task,
    reset=reset,
    step=step,
    observation_shape=(2,),
    action_shape=(2,),
    num_actions=None,
    horizon=horizon,
  )
