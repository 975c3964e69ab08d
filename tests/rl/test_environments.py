"""The task families: conventions, vmap against a loop, rollouts, and clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta import rl

ENVS = {
  'navigation': lambda: rl.navigation_2d(horizon=5),
  'bandit': lambda: rl.bernoulli_bandit(3, horizon=5),
  'mdp': lambda: rl.tabular_mdp(4, 3, horizon=5),
}


def random_actions(env, key, shape):
  if env.num_actions is None:
    return 0.3 * jax.random.normal(key, (*shape, *env.action_shape))
  return jax.random.randint(key, shape, 0, env.num_actions)


@pytest.mark.parametrize('name', sorted(ENVS))
def test_vmapped_steps_equal_a_loop_of_single_steps(name):
  env = ENVS[name]()
  tasks = rl.sample_tasks(env, jax.random.key(0), 3)
  keys = jax.random.split(jax.random.key(1), 3)
  states, obs = jax.vmap(env.reset)(tasks, keys)
  step = jax.jit(jax.vmap(env.step))
  single_step = jax.jit(env.step)
  for t in range(3):
    actions = random_actions(env, jax.random.key(10 + t), (3,))
    new_states, new_obs, rewards, dones = step(tasks, states, actions)
    for i in range(3):
      take = lambda x, i=i: x[i]  # noqa: E731
      single = single_step(
        jax.tree.map(take, tasks), jax.tree.map(take, states), actions[i]
      )
      batched = jax.tree.map(take, (new_states, new_obs, rewards, dones))
      for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(batched)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
          a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    states = new_states


def test_rollouts_over_tasks_equal_a_loop_over_tasks():
  env = ENVS['mdp']()
  policy = rl.categorical_policy(
    jmeta.mlp((8,), env.num_actions), env.observation_shape
  )
  params = policy.init(jax.random.key(0))
  tasks = rl.sample_tasks(env, jax.random.key(1), 3)
  keys = jax.random.split(jax.random.key(2), 3)
  batched = jax.jit(jax.vmap(lambda t, k: rl.rollouts(env, policy, params, t, k, 2)))(
    tasks, keys
  )
  assert batched.observations.shape == (3, 2, 5, 4)
  assert batched.actions.shape == (3, 2, 5)
  single_task = jax.jit(lambda t, k: rl.rollouts(env, policy, params, t, k, 2))
  for i in range(3):
    single = single_task(jax.tree.map(lambda x, i=i: x[i], tasks), keys[i])
    jax.tree.map(
      lambda a, b, i=i: np.testing.assert_allclose(a[i], b, atol=1e-6), batched, single
    )


def test_navigation_conventions():
  env = rl.navigation_2d()
  assert env.horizon == 100
  goals = jax.jit(jax.vmap(env.sample_task))(
    jax.random.split(jax.random.key(0), 1000)
  ).goal
  assert goals.min() >= -0.5 and goals.max() <= 0.5 and goals.min() < -0.45
  task = rl.NavigationTask(jnp.array([0.3, -0.2]))
  state, obs = env.reset(task, jax.random.key(0))
  np.testing.assert_array_equal(obs, [0.0, 0.0])
  state, obs, reward, done = env.step(task, state, jnp.array([1.0, -0.05]))
  np.testing.assert_allclose(obs, [0.1, -0.05])  # clipped to +-0.1
  np.testing.assert_allclose(reward, -np.hypot(0.2, 0.15), rtol=1e-6)
  assert not done
  state = rl.NavigationState(jnp.array([0.295, -0.2]), jnp.array(False))
  state, obs, reward, done = env.step(task, state, jnp.array([0.0, 0.0]))
  assert done  # within 0.01 of the goal on both axes


def test_rollout_masks_the_steps_after_the_goal():
  env = rl.navigation_2d(horizon=10)
  task = rl.NavigationTask(jnp.array([0.2, 0.0]))

  def toward_goal(params, obs, key):
    return jnp.clip(task.goal - obs, -0.1, 0.1)

  policy = rl.Policy(lambda key: {}, toward_goal, None)
  traj = rl.rollout(env, policy, {}, task, jax.random.key(0))
  np.testing.assert_array_equal(traj.valid, [1, 1] + [0] * 8)
  np.testing.assert_allclose(traj.rewards, [-0.1] + [0] * 9, atol=1e-7)


def test_bandit_and_mdp_priors():
  bandit = rl.bernoulli_bandit(5)
  means = jax.jit(rl.sample_tasks, static_argnums=(0, 2))(
    bandit, jax.random.key(0), 2000
  ).means
  assert means.shape == (2000, 5) and 0 <= means.min() and means.max() <= 1
  # Uniform on [0, 1]: mean 1/2, variance 1/12, and 10,000 draws reach both ends.
  np.testing.assert_allclose(means.mean(), 0.5, atol=0.01)
  np.testing.assert_allclose(means.var(), 1 / 12, atol=0.003)
  assert means.min() < 0.005 and means.max() > 0.995
  mdp = rl.tabular_mdp()
  tasks = jax.jit(rl.sample_tasks, static_argnums=(0, 2))(mdp, jax.random.key(1), 200)
  assert tasks.transitions.shape == (200, 10, 5, 10)
  np.testing.assert_allclose(tasks.transitions.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(tasks.reward_means.mean(), 1.0, atol=0.05)
  np.testing.assert_allclose(tasks.reward_means.std(), 1.0, atol=0.05)
  # Flat Dirichlet: each coordinate is Beta(1, 9), mean 1/10.
  np.testing.assert_allclose(tasks.transitions.mean(), 0.1, atol=1e-3)


def test_bandit_pays_its_means():
  env = rl.bernoulli_bandit(2, horizon=1)
  task = rl.BanditTask(jnp.array([0.2, 0.9]))
  states, _ = jax.vmap(env.reset, (None, 0))(
    task, jax.random.split(jax.random.key(0), 4000)
  )
  for arm, mean in ((0, 0.2), (1, 0.9)):
    rewards = jax.vmap(env.step, (None, 0, None))(task, states, jnp.int32(arm))[2]
    np.testing.assert_allclose(rewards.mean(), mean, atol=0.025)


def test_bad_inputs_are_named():
  nav, bandit, mdp = rl.navigation_2d(), rl.bernoulli_bandit(3), rl.tabular_mdp()
  task = nav.sample_task(jax.random.key(0))
  state, _ = nav.reset(task, jax.random.key(0))
  with pytest.raises(ValueError, match=r'shape \(2,\), got shape \(3,\)'):
    nav.step(task, state, jnp.zeros(3))
  with pytest.raises(ValueError, match='jax.vmap'):
    nav.step(task, state, jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match='floating-point'):
    nav.step(task, state, jnp.zeros(2, jnp.int32))
  btask = bandit.sample_task(jax.random.key(0))
  bstate, _ = bandit.reset(btask, jax.random.key(0))
  with pytest.raises(ValueError, match='integer action of shape'):
    bandit.step(btask, bstate, jnp.zeros(2, jnp.int32))
  with pytest.raises(ValueError, match='integer action, got dtype float32'):
    bandit.step(btask, bstate, jnp.float32(1))
  mtask = mdp.sample_task(jax.random.key(0))
  mstate, _ = mdp.reset(mtask, jax.random.key(0))
  with pytest.raises(ValueError, match='tabular_mdp.step'):
    mdp.step(mtask, mstate, jnp.zeros(1, jnp.int32))
  with pytest.raises(ValueError, match='horizon must be at least 1'):
    rl.navigation_2d(horizon=0)
  with pytest.raises(ValueError, match='horizon must be at least 1'):
    rl.rollout(nav, rl.gaussian_mlp_policy(2, 2), None, task, jax.random.key(0), 0)
  with pytest.raises(ValueError, match='num_episodes'):
    rl.rollouts(nav, rl.gaussian_mlp_policy(2, 2), None, task, jax.random.key(0), 0)
  with pytest.raises(ValueError, match='num_tasks'):
    rl.sample_tasks(nav, jax.random.key(0), 0)
  with pytest.raises(ValueError, match='num_arms'):
    rl.bernoulli_bandit(0)
  with pytest.raises(ValueError, match='reward_std'):
    rl.tabular_mdp(reward_std=-1.0)
