"""Random tabular MDPs as in RL^2 (Duan et al., 2016, Sec. 3.2).

A task has ``num_states`` states and ``num_actions`` actions (the paper: 10 and 5).
Its mean rewards ``r(s, a)`` are drawn from Normal(1, 1) and each transition
distribution ``p(. | s, a)`` from the flat Dirichlet (all concentrations 1); a
step's reward is ``r(s, a)`` plus Normal(0, reward_std^2) noise (the paper: unit
variance). Episodes start in state 0 and last ``horizon`` steps (the paper: 10).
The observation is the one-hot state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.rl.environment import Environment, check_discrete_action, check_horizon
from jmeta.validation import check_positive_int, check_positive_real


class TabularMDPTask(NamedTuple):
  reward_means: jax.Array  # (states, actions)
  transitions: jax.Array  # (states, actions, states), rows sum to 1


class TabularMDPState(NamedTuple):
  state: jax.Array  # int32 scalar
  key: jax.Array


def tabular_mdp(
  num_states: int = 10,
  num_actions: int = 5,
  *,
  horizon: int = 10,
  reward_std: float = 1.0,
) -> Environment:
  """Random MDPs with the priors of RL^2 (see the module doc).

  ``reward_std=0`` gives deterministic rewards equal to their means (the tests
  enumerate trajectories that way).
  """
  num_states = check_positive_int(num_states, 'num_states')
  num_actions = check_positive_int(num_actions, 'num_actions')
  horizon = check_horizon(horizon)
  reward_std = check_positive_real(reward_std, 'reward_std', allow_zero=True)

  def sample_task(key: jax.Array) -> TabularMDPTask:
    k_reward, k_transition = jax.random.split(key)
    means = 1.0 + jax.random.normal(k_reward, (num_states, num_actions))
    # Normalised i.i.d. Exponential(1) draws are exactly flat-Dirichlet
    # distributed, and far cheaper to compile than jax.random.dirichlet's
    # rejection-sampled gammas.
    draws = jax.random.exponential(k_transition, (num_states, num_actions, num_states))
    transitions = draws / jnp.sum(draws, axis=-1, keepdims=True)
    return TabularMDPTask(means, transitions)

  def observe(state: jax.Array) -> jax.Array:
    return jax.nn.one_hot(state, num_states)

  def reset(task: TabularMDPTask, key: jax.Array):
    del task
    state = jnp.zeros((), jnp.int32)
    return TabularMDPState(state, key), observe(state)

  def step(task: TabularMDPTask, state: TabularMDPState, action: jax.Array):
    action = check_discrete_action(action, 'tabular_mdp')
    key, k_next, k_reward = jax.random.split(state.key, 3)
    probabilities = task.transitions[state.state, action]
    next_state = jax.random.categorical(k_next, jnp.log(probabilities)).astype(
      jnp.int32
    )
    reward = task.reward_means[state.state, action]
    if reward_std > 0:
      reward = reward + reward_std * jax.random.normal(k_reward, reward.shape)
    return (
      TabularMDPState(next_state, key),
      observe(next_state),
      reward,
      jnp.array(False),
    )

  return Environment(
    name='tabular_mdp',
    sample_task=sample_task,
    reset=reset,
    step=step,
    observation_shape=(num_states,),
    action_shape=(),
    num_actions=num_actions,
    horizon=horizon,
  )
