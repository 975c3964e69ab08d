"""Bernoulli multi-armed bandits as in RL^2 (Duan et al., 2016, Sec. 3.1).

A task is a vector of arm means drawn independently from Uniform[0, 1]; pulling
arm ``a`` pays 1 with probability ``means[a]``, else 0. There is one state, so the
observation is a constant zero of shape (1,); a meta-learner such as RL^2 sees the
previous action and reward instead. An episode has ``horizon`` pulls (the paper's
n: 10, 100 or 500) and never ends early.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.rl.environment import Environment, check_discrete_action, check_horizon
from jmeta.validation import check_positive_int


class BanditTask(NamedTuple):
  means: jax.Array  # (num_arms,) in [0, 1]


class BanditState(NamedTuple):
  key: jax.Array


def bernoulli_bandit(num_arms: int = 5, *, horizon: int = 10) -> Environment:
  """Bernoulli bandits with ``num_arms`` arms whose means have a uniform prior."""
  num_arms = check_positive_int(num_arms, 'num_arms')
  horizon = check_horizon(horizon)
  observation = jnp.zeros((1,))

  def sample_task(key: jax.Array) -> BanditTask:
    return BanditTask(jax.random.uniform(key, (num_arms,)))

  def reset(task: BanditTask, key: jax.Array):
    del task
    return BanditState(key), observation

  def step(task: BanditTask, state: BanditState, action: jax.Array):
    action = check_discrete_action(action, 'bernoulli_bandit')
    key, pull = jax.random.split(state.key)
    reward = jax.random.bernoulli(pull, task.means[action]).astype(jnp.float32)
    return BanditState(key), observation, reward, jnp.array(False)

  return Environment(
    name='bernoulli_bandit',
    sample_task=sample_task,
    reset=reset,
    step=step,
    observation_shape=(1,),
    action_shape=(),
    num_actions=num_arms,
    horizon=horizon,
  )
