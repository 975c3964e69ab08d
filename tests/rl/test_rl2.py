"""RL^2: the recurrent rollout against a loop of single steps, the hidden state
across episodes and trials, PPO's clipped loss by hand, and one training step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jmeta import rl
from jmeta.rl import ppo, rl2

HORIZON, EPISODES = 2, 3


@pytest.fixture(scope='module')
def setup():
  env = rl.tabular_mdp(3, 2, horizon=HORIZON)
  policy = rl2.gru_policy(env, hidden_size=6)
  params = policy.init(jax.random.key(0))
  # Larger policy weights than the near-uniform init, so the actions depend on
  # the hidden state visibly.
  params['policy']['w'] = params['policy']['w'] * 300.0
  task = env.sample_task(jax.random.key(1))
  return env, policy, params, task


def loop_trial(env, policy, params, task, key):
  """The trial as a Python loop of single steps, with play_trial's key use."""
  reset_key, steps_key = jax.random.split(key)
  env_state, obs = env.reset(task, reset_key)
  hidden = policy.initial_state(params)
  prev_action, prev_reward, prev_done = -1, 0.0, 0.0
  out = []
  for t, step_key in enumerate(jax.random.split(steps_key, EPISODES * HORIZON)):
    action_key, next_reset_key = jax.random.split(step_key)
    x = rl2.rl2_input(obs, prev_action, prev_reward, prev_done, env.num_actions)
    hidden, logits, value = policy.step(params, hidden, x)
    action = jax.random.categorical(action_key, logits)
    env_state, obs, reward, _ = env.step(task, env_state, action.astype(jnp.int32))
    end = (t + 1) % HORIZON == 0
    if end:
      env_state, obs = env.reset(task, next_reset_key)
    out.append(
      (
        x,
        int(action),
        float(jax.nn.log_softmax(logits)[action]),
        float(value),
        float(reward),
        float(end),
        hidden,
      )
    )
    prev_action, prev_reward, prev_done = action, reward, float(end)
  return out


def test_recurrent_rollout_equals_a_loop_of_single_steps(setup):
  env, policy, params, task = setup
  key = jax.random.key(2)
  trial = jax.jit(lambda p, k: rl2.play_trial(env, policy, p, task, k, EPISODES))(
    params, key
  )
  loop = loop_trial(env, policy, params, task, key)
  np.testing.assert_allclose(trial.inputs, np.stack([s[0] for s in loop]), atol=1e-6)
  np.testing.assert_array_equal(trial.actions, [s[1] for s in loop])
  np.testing.assert_allclose(
    trial.log_probs, [s[2] for s in loop], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(trial.values, [s[3] for s in loop], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(trial.rewards, [s[4] for s in loop], rtol=1e-6)
  np.testing.assert_array_equal(trial.dones, [0.0, 1.0] * EPISODES)
  # The recorded trial, re-run under the same params, gives its own outputs.
  logits, values = rl2.trial_outputs(policy, params, trial.inputs)
  log_probs = jnp.take_along_axis(
    jax.nn.log_softmax(logits), trial.actions[:, None], axis=-1
  )[:, 0]
  np.testing.assert_allclose(log_probs, trial.log_probs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(values, trial.values, rtol=1e-5, atol=1e-6)


def test_hidden_state_is_kept_across_episodes_and_reset_between_trials(setup):
  env, policy, params, task = setup
  loop = loop_trial(env, policy, params, task, jax.random.key(3))
  first_of_episode_2 = loop[HORIZON]
  assert first_of_episode_2[0][-1] == 1.0  # the done flag of the previous step
  # Carried: the first step of episode 2 continues from the hidden state after
  # episode 1, which is not the initial one (else a reset would look the same).
  carried = np.asarray(loop[HORIZON - 1][6])
  assert np.max(np.abs(carried)) > 1e-3
  _, _, value_fresh = policy.step(
    params, policy.initial_state(params), first_of_episode_2[0]
  )
  assert abs(float(value_fresh) - first_of_episode_2[3]) > 1e-4
  # Reset between trials: every trial of a batch starts from the initial state,
  # so its first value is that of the initial state on the first input.
  tasks = rl.sample_tasks(env, jax.random.key(4), 3)
  trials = rl2.play_trials(env, policy, params, tasks, jax.random.key(5), EPISODES)
  for i in range(3):
    _, _, value = policy.step(params, policy.initial_state(params), trials.inputs[i, 0])
    np.testing.assert_allclose(trials.values[i, 0], value, rtol=1e-6)
  # Running two trials back to back without the reset changes the second's values.
  joined = jnp.concatenate([trials.inputs[0], trials.inputs[1]])
  _, joined_values = rl2.trial_outputs(policy, params, joined)
  assert np.max(np.abs(joined_values[EPISODES * HORIZON :] - trials.values[1])) > 1e-4


def test_clipped_surrogate_matches_a_hand_computation():
  # ratios 1.5, 0.5, 1.1 with advantages 1, -1, 2 and eps = 0.2:
  # min(1.5, 1.2) = 1.2; min(-0.5, -0.8) = -0.8; min(2.2, 2.2) = 2.2.
  old = jnp.log(jnp.array([0.2, 0.4, 0.5]))
  new = jnp.log(jnp.array([0.3, 0.2, 0.55]))
  advantages = jnp.array([1.0, -1.0, 2.0])
  loss = ppo.clipped_surrogate(new, old, advantages, jnp.ones(3), 0.2)
  np.testing.assert_allclose(loss, -(1.2 - 0.8 + 2.2) / 3, rtol=1e-6)
  masked = ppo.clipped_surrogate(new, old, advantages, jnp.array([1.0, 1.0, 0.0]), 0.2)
  np.testing.assert_allclose(masked, -(1.2 - 0.8) / 2, rtol=1e-6)


def test_ppo_loss_adds_value_and_entropy_terms():
  logits = jnp.array([[0.0, 0.0], [jnp.log(3.0), 0.0]])  # p = (.5, .5), (.75, .25)
  actions = jnp.array([0, 1])
  old = jnp.log(jnp.array([0.5, 0.25]))  # ratio 1 at both steps
  settings = ppo.PPOSettings(clip=0.2, value_coef=0.5, entropy_coef=0.1)
  loss, parts = ppo.ppo_loss(
    logits,
    jnp.array([1.0, 2.0]),
    actions,
    old,
    jnp.array([1.0, -2.0]),
    jnp.array([0.0, 4.0]),
    jnp.ones(2),
    settings,
  )
  entropy = (np.log(2) - (0.75 * np.log(0.75) + 0.25 * np.log(0.25))) / 2
  expected = -(1.0 - 2.0) / 2 + 0.5 * (1.0 + 4.0) / 2 - 0.1 * entropy
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(parts['entropy'], entropy, rtol=1e-6)
  assert float(parts['clip_fraction']) == 0.0


def test_a_training_step_runs_and_bad_settings_are_named():
  env = rl.bernoulli_bandit(3, horizon=1)
  policy = rl2.gru_policy(env, hidden_size=8)
  settings = ppo.PPOSettings(epochs=1, minibatches=2)
  trainer = rl2.rl2_ppo(
    env, policy, optax.adam(1e-2), num_trials=4, num_episodes=3, settings=settings
  )
  state = trainer.init(policy.init(jax.random.key(0)))
  new_state, metrics = trainer.step(state, jax.random.key(1))
  assert int(new_state.step) == 1
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert 0.0 <= float(metrics['trial_return']) <= 3.0
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params, new_state.params
  )
  assert max(jax.tree.leaves(moved)) > 0
  with pytest.raises(ValueError, match='must divide into settings.minibatches'):
    rl2.rl2_ppo(
      env,
      policy,
      optax.adam(1e-2),
      num_trials=6,
      num_episodes=4,
      settings=ppo.PPOSettings(minibatches=4),
    )
  with pytest.raises(ValueError, match='continuous actions'):
    rl2.gru_policy(rl.navigation_2d())


def test_a_separate_value_gru_is_a_second_network_over_the_same_inputs():
  env = rl.bernoulli_bandit(3, horizon=1)
  separate = rl2.gru_policy(env, hidden_size=5, separate_value=True)
  shared = rl2.gru_policy(env, hidden_size=5)
  params = separate.init(jax.random.key(0))
  params['policy']['w'] = params['policy']['w'] * 300.0
  # The same inputs through both: the policy's path is the shared policy with the
  # first GRU, the value's is the shared policy's value head on the second GRU.
  as_policy = {k: params[k] for k in ('gru', 'policy', 'value')}
  as_value = {**as_policy, 'gru': params['value_gru']}
  inputs = jax.random.uniform(jax.random.key(1), (7, separate.input_size))
  hidden = separate.initial_state(params)
  h_policy, h_value = shared.initial_state(as_policy), shared.initial_state(as_value)
  assert hidden.shape == (10,)
  for x in inputs:
    hidden, logits, value = separate.step(params, hidden, x)
    h_policy, want_logits, _ = shared.step(as_policy, h_policy, x)
    h_value, _, want_value = shared.step(as_value, h_value, x)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-6)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    np.testing.assert_allclose(hidden, jnp.concatenate([h_policy, h_value]))

  # Neither network's output depends on the other's weights.
  def outputs(params):
    _, logits, value = separate.step(params, separate.initial_state(params), x)
    return logits.sum(), value

  d_logits = jax.grad(lambda p: outputs(p)[0])(params)
  d_value = jax.grad(lambda p: outputs(p)[1])(params)
  for leaf in jax.tree.leaves(d_logits['value_gru']) + jax.tree.leaves(d_value['gru']):
    assert not np.any(leaf)
  assert any(np.any(leaf) for leaf in jax.tree.leaves(d_value['value_gru']))
  # The shared GRU keeps the keys it had before the value GRU existed (the runs
  # committed with it start from them).
  gru_key = jax.random.split(jax.random.key(0), 3)[0]
  zeros = jnp.zeros((5,)), jnp.zeros((shared.input_size,))
  want = nn.GRUCell(5).init(gru_key, *zeros)
  jax.tree.map(
    np.testing.assert_array_equal, shared.init(jax.random.key(0))['gru'], want
  )
  with pytest.raises(ValueError, match='separate_value must be a bool'):
    rl2.gru_policy(env, separate_value='yes')
