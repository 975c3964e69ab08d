"""MAML-RL's inner loop: ``adaptation`` and the returns along it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta import rl


@pytest.fixture
def bandit():
  env = rl.bernoulli_bandit(3, horizon=4)
  policy = rl.categorical_policy(jmeta.mlp((), 3), env.observation_shape)
  params = policy.init(jax.random.key(0))
  task = env.sample_task(jax.random.key(1))
  return env, policy, params, task


def test_adaptation_returns_follow_the_sampled_steps(bandit):
  """Entry k is the mean return of the episodes of inner step k, sampled with the
  params after k REINFORCE steps; the last is after all of them."""
  env, policy, params, task = bandit
  settings = rl.AdvantageSettings(baseline='none', normalize=False)
  loop = rl.adaptation(
    env,
    policy,
    inner_learning_rate=2.0,
    inner_steps=2,
    num_episodes=8,
    settings=settings,
  )
  key = jax.random.key(2)
  returns = rl.adaptation_returns(loop, params, task, key)
  assert returns.shape == (3,)
  expected = []
  for k in range(3):
    batch = rl.rollouts(
      env, policy, params, task, jax.random.fold_in(key, k), 8, env.horizon
    )
    expected.append(jnp.mean(rl.episode_returns(batch)))
    params = rl.policy_gradient_step(
      policy, params, batch, rl.estimate_advantages(batch, settings), 2.0
    )
  np.testing.assert_allclose(returns, jnp.stack(expected), rtol=1e-6)


def test_adaptation_returns_with_no_step_is_the_return_before(bandit):
  env, policy, params, task = bandit
  loop = rl.adaptation(env, policy, inner_steps=0, num_episodes=5)
  key = jax.random.key(3)
  batch = rl.rollouts(env, policy, params, task, jax.random.fold_in(key, 0), 5, 4)
  np.testing.assert_allclose(
    rl.adaptation_returns(loop, params, task, key),
    [jnp.mean(rl.episode_returns(batch))],
    rtol=1e-6,
  )


def test_adaptation_refuses_a_bad_option(bandit):
  env, policy, _, _ = bandit
  with pytest.raises(ValueError, match='num_episodes'):
    rl.adaptation(env, policy, num_episodes=0)
