"""RL^2 (Duan et al., 2016): a recurrent policy that learns within a trial, trained
with PPO across trials.

A *trial* is ``num_episodes`` episodes of one task. At step t the policy reads
``x_t = [o_t, one_hot(a_{t-1}), r_{t-1}, d_{t-1}]`` (``d`` is 1.0 after the last
step of an episode), updates a GRU's hidden state and outputs action logits and a
value. The hidden state is carried across the episodes of a trial and starts from
zeros in every trial, so what the policy learned about the task lives in its
activations (Sec. 2.2-2.3 of the paper).

* ``gru_policy``: a ``RecurrentPolicy`` (flax's ``GRUCell`` over a params pytree, a
  linear policy head and a linear value head on the GRU's output, or on a second
  GRU's).
* ``play_trial``: one trial with ``lax.scan``; ``play_trials`` vmaps it over tasks.
* ``trial_outputs``: the logits and values of a recorded trial under other params
  (the GRU re-run from its initial state), as PPO needs after each update.
* ``rl2_ppo``: a trainer (``init(params) -> RL2State``, ``step(state, key) ->
  (state, metrics)``, jitted) that samples tasks and trials inside the step, takes
  GAE advantages over each whole trial (the objective is the trial's total
  reward), and runs PPO epochs over minibatches of trials with an optax optimiser.

The paper optimised with a first-order TRPO; PPO is the issue's choice.
Episodes have ``env.horizon`` steps; an environment's ``done`` ends its episode
earlier (the next episode of the same task starts at once), and a trial always has
``num_episodes * env.horizon`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jmeta.models.layers import dense, dense_init
from jmeta.rl.advantages import gae, normalize
from jmeta.rl.environment import Environment, sample_tasks
from jmeta.rl.ppo import PPOSettings, ppo_loss
from jmeta.validation import check_positive_int


class RecurrentPolicy(NamedTuple):
  """A recurrent actor-critic as pure functions.

  Attributes:
    init: ``init(key) -> params``.
    initial_state: ``initial_state(params) -> hidden`` (zeros).
    step: ``step(params, hidden, x) -> (hidden, logits, value)`` for one input
      ``x`` of shape ``(input_size,)``.
    input_size: the features of ``x``.
    num_actions: the number of discrete actions.
  """

  init: Callable[[jax.Array], Any]
  initial_state: Callable[[Any], jax.Array]
  step: Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]
  input_size: int
  num_actions: int


def rl2_input_size(env: Environment) -> int:
  """The features of RL^2's input for ``env``: observation, one-hot previous
  action, previous reward and done flag."""
  if env.num_actions is None:
    raise ValueError(
      f'RL^2 here takes a discrete-action environment; {env.name} has continuous '
      'actions (num_actions is None).'
    )
  size = 1
  for s in env.observation_shape:
    size *= s
  return size + env.num_actions + 2


def gru_policy(
  env: Environment, hidden_size: int = 256, separate_value: bool = False
) -> RecurrentPolicy:
  """A GRU of ``hidden_size`` units with a linear policy head, for ``env``'s RL^2
  inputs, and a linear value head: on the same GRU's output, or with
  ``separate_value`` on a second GRU of the same size over the same inputs (the
  paper's baseline is a recurrent network of its own, Sec. 4), whose hidden state is
  then concatenated to the policy GRU's. With a shared GRU the value regression
  shapes the policy's features."""
  hidden_size = check_positive_int(hidden_size, 'hidden_size')
  if not isinstance(separate_value, bool):
    raise ValueError(f'separate_value must be a bool, got {separate_value!r}.')
  input_size = rl2_input_size(env)
  num_actions = env.num_actions
  cell = nn.GRUCell(hidden_size)
  state_size = 2 * hidden_size if separate_value else hidden_size

  def init(key: jax.Array) -> dict:
    # With JAX's partitionable threefry the first three of four keys are
    # split(key, 3), the shared policy's keys before the value GRU existed.
    gru_key, policy_key, value_key, value_gru_key = jax.random.split(key, 4)
    zeros = jnp.zeros((hidden_size,), jnp.float32)
    inputs = jnp.zeros((input_size,), jnp.float32)
    policy = dense_init(policy_key, hidden_size, num_actions)
    # Small initial logits: a near-uniform first policy, as in PPO's usual init.
    policy['w'] = policy['w'] * 0.01
    params = {
      'gru': cell.init(gru_key, zeros, inputs),
      'policy': policy,
      'value': dense_init(value_key, hidden_size, 1),
    }
    if separate_value:
      params['value_gru'] = cell.init(value_gru_key, zeros, inputs)
    return params

  def initial_state(params: dict) -> jax.Array:
    return jnp.zeros((state_size,), params['policy']['w'].dtype)

  def step(params: dict, hidden: jax.Array, x: jax.Array):
    if separate_value:
      hidden, value_hidden = jnp.split(hidden, 2, axis=-1)
      value_hidden, value_out = cell.apply(params['value_gru'], value_hidden, x)
    hidden, out = cell.apply(params['gru'], hidden, x)
    logits = dense(out, params['policy']['w'], params['policy']['b'])
    if separate_value:
      value = dense(value_out, params['value']['w'], params['value']['b'])[..., 0]
      return jnp.concatenate([hidden, value_hidden], axis=-1), logits, value
    value = dense(out, params['value']['w'], params['value']['b'])[..., 0]
    return hidden, logits, value

  return RecurrentPolicy(init, initial_state, step, input_size, num_actions)


def rl2_input(
  observation: jax.Array,
  previous_action: jax.Array,
  previous_reward: jax.Array,
  previous_done: jax.Array,
  num_actions: int,
) -> jax.Array:
  """``[o_t, one_hot(a_{t-1}), r_{t-1}, d_{t-1}]``; ``previous_action = -1`` (the
  first step of a trial) gives a zero one-hot."""
  return jnp.concatenate(
    [
      jnp.ravel(observation).astype(jnp.float32),
      jax.nn.one_hot(previous_action, num_actions, dtype=jnp.float32),
      jnp.reshape(previous_reward, (1,)).astype(jnp.float32),
      jnp.reshape(previous_done, (1,)).astype(jnp.float32),
    ]
  )


class Trial(NamedTuple):
  """One trial's steps, time axis first (then any batch axes before it)."""

  inputs: jax.Array  # (..., T, input_size): x_t
  actions: jax.Array  # (..., T) int32
  log_probs: jax.Array  # (..., T): log pi(a_t | x_{<=t}) when sampled
  values: jax.Array  # (..., T)
  rewards: jax.Array  # (..., T)
  dones: jax.Array  # (..., T) float: 1.0 where an episode ends at step t


def _select(flag, a, b):
  return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def play_trial(
  env: Environment,
  policy: RecurrentPolicy,
  params: Any,
  task: Any,
  key: jax.Array,
  num_episodes: int,
) -> Trial:
  """One trial of ``num_episodes`` episodes of ``task`` (``num_episodes *
  env.horizon`` steps), the hidden state starting from ``initial_state``."""
  num_episodes = check_positive_int(num_episodes, 'num_episodes')
  horizon = env.horizon
  reset_key, steps_key = jax.random.split(key)
  env_state, observation = env.reset(task, reset_key)
  carry = (
    env_state,
    observation,
    policy.initial_state(params),
    jnp.array(-1, jnp.int32),
    jnp.array(0.0, jnp.float32),
    jnp.array(0.0, jnp.float32),
    jnp.array(0, jnp.int32),
  )

  def one_step(carry, step_key):
    env_state, observation, hidden, prev_action, prev_reward, prev_done, t = carry
    action_key, next_reset_key = jax.random.split(step_key)
    x = rl2_input(observation, prev_action, prev_reward, prev_done, policy.num_actions)
    hidden, logits, value = policy.step(params, hidden, x)
    action = jax.random.categorical(action_key, logits).astype(jnp.int32)
    log_prob = jax.nn.log_softmax(logits)[action]
    env_state, observation, reward, done = env.step(task, env_state, action)
    end = done | (t == horizon - 1)
    # A new episode of the same task; the hidden state is kept.
    fresh_state, fresh_observation = env.reset(task, next_reset_key)
    env_state = _select(end, fresh_state, env_state)
    observation = jnp.where(end, fresh_observation, observation)
    end = end.astype(jnp.float32)
    reward = reward.astype(jnp.float32)
    t = jnp.where(end > 0, 0, t + 1)
    out = (x, action, log_prob, value, reward, end)
    return (env_state, observation, hidden, action, reward, end, t), out

  _, out = jax.lax.scan(
    one_step, carry, jax.random.split(steps_key, num_episodes * horizon)
  )
  return jax.lax.stop_gradient(Trial(*out))


def play_trials(
  env: Environment,
  policy: RecurrentPolicy,
  params: Any,
  tasks: Any,
  key: jax.Array,
  num_episodes: int,
) -> Trial:
  """``play_trial`` on each task of the stack ``tasks`` (vmapped)."""
  num_tasks = jax.tree.leaves(tasks)[0].shape[0]
  keys = jax.random.split(key, num_tasks)
  return jax.vmap(
    lambda task, k: play_trial(env, policy, params, task, k, num_episodes)
  )(tasks, keys)


def trial_outputs(
  policy: RecurrentPolicy, params: Any, inputs: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The logits ``(T, num_actions)`` and values ``(T,)`` of ``policy`` on one
  trial's recorded inputs, the GRU run from its initial state."""

  def body(hidden, x):
    hidden, logits, value = policy.step(params, hidden, x)
    return hidden, (logits, value)

  _, (logits, values) = jax.lax.scan(body, policy.initial_state(params), inputs)
  return logits, values


class RL2State(NamedTuple):
  step: jax.Array
  params: Any
  opt_state: Any


class RL2Trainer(NamedTuple):
  """``init(params) -> RL2State``; ``step(state, key) -> (state, metrics)`` (jitted)."""

  init: Callable[[Any], RL2State]
  step: Callable[[RL2State, jax.Array], tuple[RL2State, dict]]


def trial_advantages(trials: Trial, settings: PPOSettings):
  """GAE advantages and value targets over each whole trial (time axis last): the
  discount runs across episode boundaries, since the return is the trial's."""
  valid = jnp.ones_like(trials.rewards)
  advantages = gae(
    trials.rewards, trials.values, valid, settings.gamma, settings.gae_lambda
  )
  returns = advantages + trials.values
  if settings.normalize_advantages:
    advantages = normalize(advantages, valid)
  return advantages, returns


def check_ppo_settings(settings: PPOSettings, num_trials: int) -> PPOSettings:
  check_positive_int(settings.epochs, 'settings.epochs')
  minibatches = check_positive_int(settings.minibatches, 'settings.minibatches')
  if num_trials % minibatches:
    raise ValueError(
      f'num_trials ({num_trials}) must divide into settings.minibatches '
      f'({minibatches}) equal minibatches of trials; change either.'
    )
  if not settings.clip > 0:
    raise ValueError(f'settings.clip must be positive, got {settings.clip}.')
  for name in ('gamma', 'gae_lambda'):
    if not 0.0 <= getattr(settings, name) <= 1.0:
      raise ValueError(
        f'settings.{name} must be in [0, 1], got {getattr(settings, name)}.'
      )
  return settings


def rl2_ppo(
  env: Environment,
  policy: RecurrentPolicy,
  optimizer: optax.GradientTransformation,
  *,
  num_trials: int,
  num_episodes: int,
  settings: PPOSettings | None = None,
) -> RL2Trainer:
  """RL^2 trained with PPO: each step samples ``num_trials`` tasks, plays one trial
  of ``num_episodes`` episodes on each with the current params, and runs
  ``settings.epochs`` passes of ``settings.minibatches`` PPO updates over the
  trials (each update re-runs the GRU over its trials from their start).

  Metrics: ``trial_return`` (the mean total reward of the sampled trials, before
  the update), ``loss`` and the parts of ``ppo_loss`` averaged over the updates.
  """
  num_trials = check_positive_int(num_trials, 'num_trials')
  num_episodes = check_positive_int(num_episodes, 'num_episodes')
  settings = check_ppo_settings(settings or PPOSettings(), num_trials)
  batch = num_trials // settings.minibatches

  def init(params) -> RL2State:
    return RL2State(jnp.zeros((), jnp.int32), params, optimizer.init(params))

  def loss_fn(params, trials: Trial, advantages, returns):
    logits, values = jax.vmap(lambda x: trial_outputs(policy, params, x))(trials.inputs)
    return ppo_loss(
      logits,
      values,
      trials.actions,
      trials.log_probs,
      advantages,
      returns,
      jnp.ones_like(returns),
      settings,
    )

  def update(carry, minibatch):
    params, opt_state = carry
    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *minibatch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), {'loss': loss, **parts}

  @jax.jit
  def step(state: RL2State, key: jax.Array):
    task_key, trial_key, shuffle_key = jax.random.split(key, 3)
    tasks = sample_tasks(env, task_key, num_trials)
    trials = play_trials(env, policy, state.params, tasks, trial_key, num_episodes)
    advantages, returns = trial_advantages(trials, settings)
    data = (trials, advantages, returns)

    def epoch(carry, epoch_key):
      order = jax.random.permutation(epoch_key, num_trials)
      shuffled = jax.tree.map(
        lambda x: x[order].reshape(settings.minibatches, batch, *x.shape[1:]),
        data,
      )
      return jax.lax.scan(update, carry, shuffled)

    (params, opt_state), parts = jax.lax.scan(
      epoch,
      (state.params, state.opt_state),
      jax.random.split(shuffle_key, settings.epochs),
    )
    metrics = jax.tree.map(jnp.mean, parts)
    metrics['trial_return'] = jnp.mean(jnp.sum(trials.rewards, axis=-1))
    return RL2State(state.step + 1, params, opt_state), metrics

  return RL2Trainer(init, step)
