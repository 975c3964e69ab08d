"""The brax locomotion families: rewards from their formulas, checked against brax's
own torso positions; vmapped steps against single steps; bad input refused."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import rl

STEPS = 10
DT = 0.05  # brax's halfcheetah and ant: 0.05 s a step, as the reference


def _actions(env, key):
  # Some beyond [-1, 1], so the clipping shows in the control cost.
  return jax.random.uniform(key, (STEPS, *env.action_shape), minval=-1.5, maxval=1.5)


def _play(env, goal, actions, key):
  """Rewards, dones and the torso's x before and after, for one fixed action list."""
  task = rl.LocomotionTask(jnp.asarray(goal, jnp.float32))
  state, _ = env.reset(task, key)

  def body(state, action):
    state, _, reward, done = env.step(task, state, action)
    return state, (reward, done)

  end, (rewards, dones) = jax.lax.scan(body, state, actions)
  torso_x = lambda s: s.pipeline_state.x.pos[0, 0]  # noqa: E731
  return rewards, dones, torso_x(state), torso_x(end)


@pytest.fixture(scope='module')
def cheetah():
  env = rl.half_cheetah_direction()
  actions = _actions(env, jax.random.key(0))
  play = jax.jit(lambda goal: _play(env, goal, actions, jax.random.key(1)))
  return env, actions, play(1.0), play(-1.0)


def test_half_cheetah_direction_rewards_velocity_by_direction_less_control(cheetah):
  env, actions, forward, backward = cheetah
  ctrl = 0.05 * jnp.sum(jnp.square(jnp.clip(actions, -1, 1)), axis=-1)
  np.testing.assert_allclose(forward[0] + backward[0], -2 * ctrl, rtol=1e-5, atol=1e-6)
  # Half the difference is the forward velocity: over the steps it adds up to the
  # torso's displacement that brax's own positions give.
  velocity = (forward[0] - backward[0]) / 2
  x0, x1 = forward[2], forward[3]
  np.testing.assert_allclose(jnp.sum(velocity) * DT, x1 - x0, rtol=1e-4, atol=1e-5)
  assert abs(float(x1 - x0)) > 1e-3  # the random actions move it
  assert not np.any(forward[1])  # the cheetah never ends an episode


def test_half_cheetah_velocity_rewards_closeness_to_the_goal_velocity(cheetah):
  _, actions, forward, backward = cheetah
  velocity = (forward[0] - backward[0]) / 2
  ctrl = 0.05 * jnp.sum(jnp.square(jnp.clip(actions, -1, 1)), axis=-1)
  env = rl.half_cheetah_velocity()
  rewards, _, _, _ = jax.jit(lambda: _play(env, 1.3, actions, jax.random.key(1)))()
  np.testing.assert_allclose(
    rewards, -jnp.abs(velocity - 1.3) - ctrl, rtol=1e-4, atol=1e-5
  )
  goals = rl.sample_tasks(env, jax.random.key(2), 4000).goal
  assert 0 <= goals.min() and goals.max() <= 2
  np.testing.assert_allclose(goals.mean(), 1.0, atol=0.05)


def test_n_frames_sets_the_physics_steps_per_step():
  # 3 of spring's 0.003125 s steps: the reference's 0.01 s step, nearly.
  env = rl.half_cheetah_direction(n_frames=3)
  actions = _actions(env, jax.random.key(0))
  play = jax.jit(lambda goal: _play(env, goal, actions, jax.random.key(1)))
  forward, backward = play(1.0), play(-1.0)
  velocity = (forward[0] - backward[0]) / 2
  x0, x1 = forward[2], forward[3]
  np.testing.assert_allclose(
    jnp.sum(velocity) * 3 * 0.003125, x1 - x0, rtol=1e-4, atol=1e-6
  )
  assert abs(float(x1 - x0)) > 1e-4


def test_reference_observation_appends_the_centre_of_mass_of_the_links():
  task = rl.LocomotionTask(jnp.float32(1.0))
  brax_env = rl.half_cheetah_velocity(n_frames=3)
  env = rl.half_cheetah_velocity(n_frames=3, observation='reference')
  assert env.observation_shape == (20,) and brax_env.observation_shape == (17,)
  actions = _actions(env, jax.random.key(0))

  def play(env):
    state, obs = env.reset(task, jax.random.key(1))

    def body(state, action):
      state, obs, _, _ = env.step(task, state, action)
      return state, (obs, state.pipeline_state.x_i.pos)

    _, (observations, centres) = jax.lax.scan(body, state, actions)
    return obs, observations, centres

  first, observations, centres = jax.jit(lambda: play(env))()
  brax_first, brax_observations, _ = jax.jit(lambda: play(brax_env))()
  np.testing.assert_array_equal(first[:17], brax_first)
  np.testing.assert_array_equal(observations[:, :17], brax_observations)
  # spring's own link centres (x_i), weighted by the model's link masses.
  from brax import envs  # noqa: PLC0415 -- the optional dependency, as rl's

  mass = np.asarray(envs.get_environment('halfcheetah').sys.link.inertia.mass)
  expected = np.einsum('l,tlk->tk', mass, np.asarray(centres)) / mass.sum()
  np.testing.assert_allclose(observations[:, 17:], expected, rtol=1e-5, atol=1e-6)
  assert np.ptp(observations[:, 17]) > 1e-3  # the centre moves along x


def test_centre_of_mass_velocity_rewards_the_whole_robots_displacement():
  actions = _actions(rl.half_cheetah_direction(), jax.random.key(0))
  env = rl.half_cheetah_direction(n_frames=3, velocity='centre_of_mass')
  torso = rl.half_cheetah_direction(n_frames=3)
  task = rl.LocomotionTask(jnp.float32(1.0))

  def play(env):
    state, _ = env.reset(task, jax.random.key(1))

    def body(state, action):
      state, _, reward, _ = env.step(task, state, action)
      return state, (reward, state.pipeline_state.x_i.pos)

    first = state.pipeline_state.x_i.pos
    _, (rewards, centres) = jax.lax.scan(body, state, actions)
    return rewards, jnp.concatenate([first[None], centres])

  rewards, centres = jax.jit(lambda: play(env))()
  torso_rewards, _ = jax.jit(lambda: play(torso))()
  from brax import envs  # noqa: PLC0415 -- the optional dependency, as rl's

  mass = np.asarray(envs.get_environment('halfcheetah').sys.link.inertia.mass)
  x = np.einsum('l,tl->t', mass, np.asarray(centres)[..., 0]) / mass.sum()
  ctrl = 0.05 * jnp.sum(jnp.square(jnp.clip(actions, -1, 1)), axis=-1)
  dt = 3 * 0.003125
  np.testing.assert_allclose(rewards, np.diff(x) / dt - ctrl, rtol=1e-3, atol=2e-3)
  # The same states, a different velocity: the legs' swing moves the centre of
  # mass other than the torso.
  assert np.max(np.abs(rewards - torso_rewards)) > 0.05


def test_reference_reset_is_rllabs_start_noise():
  task = rl.LocomotionTask(jnp.float32(1.0))
  keys = jax.random.split(jax.random.key(2), 1000)
  starts = {}
  for reset in rl.locomotion.RESETS:
    env = rl.half_cheetah_velocity(n_frames=3, reset=reset)
    state, obs = jax.jit(jax.vmap(lambda k, env=env: env.reset(task, k)))(keys)
    starts[reset] = state.pipeline_state.q, state.pipeline_state.qd, obs
  q, qd, obs = map(np.asarray, starts['reference'])
  # rllab: q0 + N(0, 0.01^2) (the cheetah's q0 is zero), qd + N(0, 0.1^2).
  np.testing.assert_allclose(q.mean(0), 0.0, atol=0.0015)
  np.testing.assert_allclose(q.std(0), 0.01, rtol=0.1)
  np.testing.assert_allclose(qd.std(0), 0.1, rtol=0.1)
  assert np.all(np.abs(q) < 0.06)  # a few sigma, not brax's uniform +-0.1
  q_brax = np.asarray(starts['brax'][0])
  np.testing.assert_allclose(q_brax.std(0), 0.1 / np.sqrt(3), rtol=0.1)  # U(-.1, .1)
  np.testing.assert_array_equal(obs, np.concatenate([q[:, 1:], qd], axis=1))

  # From that start, brax steps it: its own observation of the next state is the
  # same formula, and the reference reset starts each key differently.
  env = rl.half_cheetah_velocity(n_frames=3, reset='reference')
  state, _ = env.reset(task, keys[0])
  state, obs, _, _ = jax.jit(lambda s: env.step(task, s, jnp.ones(6)))(state)
  ps = state.pipeline_state
  np.testing.assert_allclose(obs, jnp.concatenate([ps.q[1:], ps.qd]), atol=1e-6)
  assert np.ptp(q[:, 2]) > 0.03


def test_directions_are_plus_or_minus_one_with_equal_odds():
  env = rl.half_cheetah_direction()
  goals = np.asarray(rl.sample_tasks(env, jax.random.key(3), 4000).goal)
  assert set(np.unique(goals)) == {-1.0, 1.0}
  np.testing.assert_allclose(goals.mean(), 0.0, atol=0.05)
  for direction in (1.0, -1.0):
    fixed = rl.half_cheetah_direction(direction=direction)
    goals = np.asarray(rl.sample_tasks(fixed, jax.random.key(3), 100).goal)
    assert set(np.unique(goals)) == {direction}


def test_vmapped_steps_equal_single_steps():
  env = rl.half_cheetah_direction()
  tasks = rl.sample_tasks(env, jax.random.key(4), 3)
  keys = jax.random.split(jax.random.key(5), 3)
  actions = jax.random.uniform(jax.random.key(6), (3, 3, *env.action_shape))

  def play(task, key, acts):
    state, obs = env.reset(task, key)

    def body(state, action):
      state, obs, reward, _ = env.step(task, state, action)
      return state, (obs, reward)

    _, (observations, rewards) = jax.lax.scan(body, state, acts)
    return obs, observations, rewards

  together = jax.jit(jax.vmap(play))(tasks, keys, actions)
  one = jax.jit(play)
  for i in range(3):
    alone = one(jax.tree.map(lambda x, i=i: x[i], tasks), keys[i], actions[i])
    for a, b in zip(jax.tree.map(lambda x, i=i: x[i], together), alone):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_ant_direction_adds_survival_and_stays_ended():
  env = rl.ant_direction()
  actions = _actions(env, jax.random.key(7))
  play = jax.jit(lambda goal: _play(env, goal, actions, jax.random.key(8)))
  forward, backward = play(1.0), play(-1.0)
  ctrl = 0.005 * jnp.sum(jnp.square(jnp.clip(actions, -1, 1)), axis=-1)
  np.testing.assert_allclose(
    forward[0] + backward[0], 2 * (0.05 - ctrl), rtol=1e-4, atol=1e-5
  )
  task = rl.LocomotionTask(jnp.float32(1.0))
  state, _ = env.reset(task, jax.random.key(9))
  ended = state.replace(done=jnp.ones_like(state.done))
  _, _, _, done = jax.jit(lambda s: env.step(task, s, actions[0]))(ended)
  assert bool(done)


def test_locomotion_refuses_bad_input(monkeypatch):
  env = rl.half_cheetah_direction()
  task = rl.LocomotionTask(jnp.float32(1.0))
  state, _ = env.reset(task, jax.random.key(0))
  with pytest.raises(
    ValueError, match=r'half_cheetah_direction.step takes one action of shape \(6,\)'
  ):
    env.step(task, state, jnp.zeros((2, 6)))
  with pytest.raises(ValueError, match="unknown brax backend 'physx'"):
    rl.half_cheetah_direction(backend='physx')
  with pytest.raises(ValueError, match='horizon must be at least 1'):
    rl.ant_direction(horizon=0)
  with pytest.raises(ValueError, match='n_frames must be a positive int'):
    rl.half_cheetah_velocity(n_frames=0)
  for bad in (0.5, 2, True):
    with pytest.raises(ValueError, match=r'direction must be None .* got'):
      rl.ant_direction(direction=bad)
  with pytest.raises(ValueError, match='max_velocity must be > 0, got 0.0'):
    rl.half_cheetah_velocity(max_velocity=0.0)
  with pytest.raises(ValueError, match=r"unknown observation 'rllab'; expected one"):
    rl.half_cheetah_direction(observation='rllab')
  with pytest.raises(ValueError, match=r"unknown velocity 'com'; expected one of"):
    rl.ant_direction(velocity='com')
  with pytest.raises(ValueError, match=r"unknown reset 'rllab'; expected one of"):
    rl.half_cheetah_velocity(reset='rllab')
  monkeypatch.setitem(sys.modules, 'brax', None)
  with pytest.raises(ImportError, match=r"pip install 'jmeta\[rl\]'"):
    rl.half_cheetah_direction()
