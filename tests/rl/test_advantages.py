"""Returns, the linear baseline and GAE against numpy loops; MAML-RL's errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta import rl


def numpy_gae(rewards, values, gamma, lam):
  advantages = np.zeros_like(rewards)
  for i in range(rewards.shape[0]):
    last = 0.0
    for t in reversed(range(rewards.shape[1])):
      next_value = values[i, t + 1] if t + 1 < rewards.shape[1] else 0.0
      delta = rewards[i, t] + gamma * next_value - values[i, t]
      last = delta + gamma * lam * last
      advantages[i, t] = last
  return advantages


def test_returns_and_gae_match_loops(x64):
  rng = np.random.default_rng(0)
  rewards, values = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
  valid = np.ones((3, 6))
  returns = np.zeros_like(rewards)
  for i in range(3):
    acc = 0.0
    for t in reversed(range(6)):
      acc = rewards[i, t] + 0.9 * acc
      returns[i, t] = acc
  np.testing.assert_allclose(rl.discounted_returns(rewards, valid, 0.9), returns)
  np.testing.assert_allclose(
    rl.gae(rewards, values, valid, 0.9, 0.8), numpy_gae(rewards, values, 0.9, 0.8)
  )
  # lambda = 1: the discounted return minus the baseline.
  np.testing.assert_allclose(rl.gae(rewards, values, valid, 0.9, 1.0), returns - values)
  # Invalid steps count as zero rewards and values.
  valid[:, 4:] = 0
  expected = numpy_gae(rewards * valid, values * valid, 0.9, 0.8) * valid
  np.testing.assert_allclose(rl.gae(rewards * valid, values, valid, 0.9, 0.8), expected)


def test_linear_baseline_is_ridge_regression_on_the_features(x64):
  rng = np.random.default_rng(1)
  obs = rng.normal(size=(4, 7, 2))
  returns = rng.normal(size=(4, 7))
  valid = np.ones((4, 7))
  valid[0, 5:] = 0
  values = rl.linear_baseline(obs, returns, valid, reg=1e-5)
  t = np.arange(7)[None, :, None].repeat(4, 0) / 100
  x = (
    np.concatenate([obs, obs**2, t, t**2, t**3, np.ones_like(t)], -1) * valid[..., None]
  )
  x2 = x.reshape(-1, x.shape[-1])
  w = np.linalg.solve(
    x2.T @ x2 + 1e-5 * np.eye(x2.shape[1]), x2.T @ (returns * valid).ravel()
  )
  np.testing.assert_allclose(values, (x @ w) * valid, rtol=1e-8, atol=1e-10)
  norm = rl.normalize(jnp.asarray(returns), jnp.asarray(valid))
  kept = np.asarray(norm)[valid > 0]
  np.testing.assert_allclose([kept.mean(), kept.std()], [0.0, 1.0], atol=1e-6)


def test_linear_baselines_of_a_task_batch_fit_one_matrix_at_a_time(lapack_batch_dims):
  """Batched over tasks, the baseline's solves hung XLA:CPU in half-cheetah's TRPO
  step (jmeta.xla_workarounds); each task's solve is its own LAPACK call."""
  obs = jax.random.normal(jax.random.key(0), (3, 4, 7, 5))
  returns, valid = jnp.ones((3, 4, 7)), jnp.ones((3, 4, 7))
  assert set(lapack_batch_dims(jax.vmap(rl.linear_baseline), obs, returns, valid)) == {
    0
  }
  np.testing.assert_allclose(
    jax.vmap(rl.linear_baseline)(obs, returns, valid),
    np.stack([rl.linear_baseline(*task) for task in zip(obs, returns, valid)]),
    rtol=1e-6,
    atol=1e-6,
  )


def test_maml_rl_errors_are_named():
  env, policy = rl.navigation_2d(), rl.gaussian_mlp_policy(2, 2)
  with pytest.raises(ValueError, match='unknown estimator'):
    rl.maml_rl(env, policy, estimator='dice2')
  with pytest.raises(ValueError, match="estimator='dice_full' is exact only"):
    rl.maml_rl(env, policy, estimator='dice_full')
  with pytest.raises(ValueError, match='baseline must be one of'):
    rl.maml_rl(env, policy, settings=rl.AdvantageSettings(baseline='mlp'))
  with pytest.raises(ValueError, match='num_episodes'):
    rl.maml_rl(env, policy, num_episodes=0)
  with pytest.raises(ValueError, match='horizon must be at least 1'):
    rl.maml_rl(env, policy, horizon=0)
  learner = rl.maml_rl(env, policy)
  with pytest.raises(ValueError, match='RLTaskBatch'):
    learner.meta_gradient(policy.init(jax.random.key(0)), jnp.zeros(3))


def test_a_meta_step_through_make_meta_trainer():
  """MAML-RL is a MetaLearner: the optax outer loop samples tasks in its step.
  (Every estimator's surrogate is tested in test_exact_meta_gradient.py.)"""
  env = rl.navigation_2d(horizon=4)
  policy = rl.gaussian_mlp_policy(2, 2, hidden_sizes=(8,))
  params = policy.init(jax.random.key(0))
  learner = rl.maml_rl(env, policy, num_episodes=3)
  trainer = jmeta.outer_loop.with_task_sampling(
    jmeta.make_meta_trainer(learner, optax.adam(1e-3)),
    lambda key: rl.sample_task_batch(env, key, 2),
  )
  state = trainer.init(learner.init(params))
  state, metrics = trainer.step(state, jax.random.key(1))
  jmeta.outer_loop.raise_if_nonfinite(state)
  assert int(state.step) == 1
  assert set(metrics) == {'loss', 'return_before', 'return_after'}
  np.testing.assert_allclose(metrics['loss'], -metrics['return_after'])
  assert not jnp.allclose(
    state.params['log_std'], params['log_std']
  ) or not jnp.allclose(
    state.params['mean']['layer_0']['w'], params['mean']['layer_0']['w']
  )
