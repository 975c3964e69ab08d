"""Locomotion task families on brax (Finn et al., 2017, Sec. 5.3): half-cheetah
direction and velocity, ant direction.

Each wraps one brax environment (``brax.envs.get_environment``) in jmeta's pure
``Environment`` interface: the brax ``State`` is the environment state, brax's
observation is the observation, and the reward is the task's, computed from the
forward velocity ``v`` (by default the torso's, brax's ``x_velocity`` metric) and the
action ``a`` (clipped to [-1, 1], the action bounds) as the reference code
(cbfinn/maml_rl, ``rllab/envs/mujoco``) computes it:

* half-cheetah direction: ``d v - 0.05 |a|^2``, d = +1 or -1 with probability 1/2
  (``half_cheetah_env_rand_direc.py``);
* half-cheetah velocity: ``-|v - g| - 0.05 |a|^2``, g uniform in [0, 2] as the
  paper states (the code's last version draws from [0.1, 0.8]);
* ant direction: ``d v - 0.005 |a|^2 + 0.05``, ended when the torso's height leaves
  [0.2, 1] (``ant_env_rand_direc.py``; brax's ant without contact forces, so the
  reference's contact cost of 5e-4 |clip(f_ext, -1, 1)|^2 is left out).

Where it differs from the reference: brax's models and physics (each family's
``backend``), not MuJoCo 1.31's; brax's observations (the half-cheetah's 17 are
the reference's without the torso's centre of mass, which
``observation='reference'`` appends; the ant's 27 leave out the contact forces and
orientation matrix); the rewarded velocity (the reference's is the whole robot's
centre of mass's, ``get_body_comvel('torso')``, which ``velocity='centre_of_mass'``
gives); and the half-cheetah's start (brax's q + U(-0.1, 0.1), qd + N(0, 0.1^2);
rllab's ``reset_mujoco``, q + N(0, 0.01^2), qd + N(0, 0.1^2), with
``reset='reference'``). The step: brax's default is 0.05 s for both (on ``spring``, 16
physics steps of 0.003125 s for the half-cheetah, 10 of 0.005 s for the ant); the
reference's half-cheetah takes 0.01 s a step (``half_cheetah.xml``'s timestep with
no frame skip), so a 200-step episode there is 2 s, and its ant 0.02 s. ``n_frames``
sets the physics steps per step: 3 gives the half-cheetah 0.009375 s, the nearest on
``spring``, and 4 the ant 0.02 s. brax is an optional dependency: ``pip install
'jmeta[rl]'``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.rl.environment import Environment, check_continuous_action, check_horizon
from jmeta.validation import check_choice, check_positive_int, check_positive_real

# brax's physics pipelines; 'spring' is the default (benchmarks/rl_envs.py: the
# fastest on this CPU, 2-3x 'generalized' and 'positional').
BACKENDS = ('spring', 'positional', 'generalized', 'mjx')
# 'brax': brax's own observation; 'reference': the half-cheetah's as rllab builds it
# (``half_cheetah_env_rand_direc.py``'s get_current_obs), brax's with the centre of
# mass of the torso's subtree, the whole robot, appended.
OBSERVATIONS = ('brax', 'reference')
# The forward velocity v in the reward: 'torso', brax's ``x_velocity`` (the torso's
# displacement over the step / dt); 'centre_of_mass', the whole robot's, as the
# reference's ``get_body_comvel('torso')`` (MuJoCo's subtree velocity of the root).
VELOCITIES = ('torso', 'centre_of_mass')
# The half-cheetah's start: 'brax', brax's own; 'reference', rllab's reset_mujoco.
RESETS = ('brax', 'reference')


class LocomotionTask(NamedTuple):
  """A direction (+1 or -1, as a float) or a goal velocity: a scalar."""

  goal: jax.Array


def _brax_environment(name: str, backend: str, **kwargs: Any):
  check_choice(backend, BACKENDS, 'brax backend')
  try:
    from brax import envs
  except ImportError as error:
    raise ImportError(
      'the locomotion families run on brax, an optional dependency: pip install '
      "'jmeta[rl]' (or pip install brax)."
    ) from error
  return envs.get_environment(name, backend=backend, **kwargs)


def _family(
  name: str,
  brax_name: str,
  sample_goal,
  reward_fn,
  *,
  backend: str,
  horizon: int,
  n_frames: int | None = None,
  brax_options: dict | None = None,
  observation: str = 'brax',
  velocity: str = 'torso',
  reset: str = 'brax',
  reference_observation=None,
) -> Environment:
  """``reference_observation(q, qd)``: brax's observation of a state, which
  ``reset='reference'`` needs and the families that allow it give."""
  horizon = check_horizon(horizon)
  check_choice(observation, OBSERVATIONS, 'observation')
  check_choice(velocity, VELOCITIES, 'velocity')
  check_choice(reset, RESETS, 'reset')
  brax_options = dict(brax_options or {})
  if n_frames is not None:
    brax_options['n_frames'] = check_positive_int(n_frames, 'n_frames')
  env = _brax_environment(brax_name, backend, **brax_options)
  action_shape = (env.action_size,)
  centre = _centre_of_mass(env)
  if observation == 'reference':
    observation_size = env.observation_size + 3

    def observe(state):
      return jnp.concatenate([state.obs, centre(state.pipeline_state)])

  else:
    observe, observation_size = (lambda state: state.obs), env.observation_size
  if velocity == 'centre_of_mass':

    def forward_velocity(before, after):
      moved = centre(after.pipeline_state)[0] - centre(before.pipeline_state)[0]
      return moved / env.dt

  else:

    def forward_velocity(before, after):
      del before
      return after.metrics['x_velocity']

  start = env.reset if reset == 'brax' else _reference_start(env, reference_observation)

  def sample_task(key: jax.Array) -> LocomotionTask:
    return LocomotionTask(sample_goal(key))

  def reset_fn(task: LocomotionTask, key: jax.Array):
    del task  # the start does not depend on the goal
    state = start(key)
    state = state.replace(obs=observe(state))
    return state, state.obs

  def step(task: LocomotionTask, state, action: jax.Array):
    action = check_continuous_action(action, action_shape, name)
    action = jnp.clip(action, -1.0, 1.0)
    ended = state.done > 0
    before, state = state, env.step(state, action)
    reward = reward_fn(
      task.goal, forward_velocity(before, state), jnp.sum(jnp.square(action))
    )
    # brax recomputes done at every step; an ended episode stays ended.
    done = ended | (state.done > 0)
    state = state.replace(done=done.astype(state.done.dtype), obs=observe(state))
    return state, state.obs, reward, done

  return Environment(
    name=name,
    sample_task=sample_task,
    reset=reset_fn,
    step=step,
    observation_shape=(observation_size,),
    action_shape=action_shape,
    num_actions=None,
    horizon=horizon,
  )


def _centre_of_mass(env):
  """pipeline state -> the robot's centre of mass (x, y, z): sum_i m_i c_i / sum_i
  m_i over the links' centres c_i in the world frame."""
  from brax import math as brax_math

  mass = env.sys.link.inertia.mass
  offsets = env.sys.link.inertia.transform.pos  # each link's centre, in its frame

  def centre(pipeline_state) -> jax.Array:
    frames = pipeline_state.x
    centres = frames.pos + jax.vmap(brax_math.rotate)(offsets, frames.rot)
    return mass @ centres / jnp.sum(mass)

  return centre


def _reference_start(env, observation_fn):
  """key -> brax's reset state moved to rllab's start (``reset_mujoco``):
  q = q0 + N(0, 0.01^2), qd = N(0, 0.1^2)."""

  def start(key):
    key, key_q, key_qd = jax.random.split(key, 3)
    state = env.reset(key)  # for brax's other fields: metrics, info, done
    q = env.sys.init_q + 0.01 * jax.random.normal(key_q, (env.sys.q_size(),))
    qd = 0.1 * jax.random.normal(key_qd, (env.sys.qd_size(),))
    return state.replace(
      pipeline_state=env.pipeline_init(q, qd), obs=observation_fn(q, qd)
    )

  return start


def _half_cheetah_observation(q: jax.Array, qd: jax.Array) -> jax.Array:
  # brax's halfcheetah: its joint positions without the root's x, then velocities.
  return jnp.concatenate([q[1:], qd])


def _direction(direction: float | None):
  """Samples d = +1 or -1 with probability 1/2, or always ``direction`` (a
  single-task family, as the reference's oracle runs train on)."""
  if direction is None:
    return lambda key: jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
  if isinstance(direction, bool) or direction not in (1, -1):
    raise ValueError(
      f'direction must be None (either, at random), 1.0 (forward) or -1.0 '
      f'(backward); got {direction!r}.'
    )
  return lambda key: jnp.float32(direction)


def half_cheetah_direction(
  *,
  backend: str = 'spring',
  horizon: int = 200,
  n_frames: int | None = None,
  direction: float | None = None,
  observation: str = 'brax',
  velocity: str = 'torso',
  reset: str = 'brax',
) -> Environment:
  """Run forward (d = 1) or backward (d = -1): reward d v - 0.05 |a|^2.

  ``n_frames``: physics steps per step (None: brax's own, 0.05 s a step).
  ``direction``: None draws d per task; 1.0 or -1.0 fixes it (one task).
  ``observation``: one of ``OBSERVATIONS``; 'reference' appends the centre of
  mass to brax's 17 numbers. ``velocity``: one of ``VELOCITIES``, the v rewarded.
  ``reset``: one of ``RESETS``, the start's noise."""
  return _family(
    'half_cheetah_direction',
    'halfcheetah',
    _direction(direction),
    lambda d, v, a2: d * v - 0.05 * a2,
    backend=backend,
    horizon=horizon,
    n_frames=n_frames,
    observation=observation,
    velocity=velocity,
    reset=reset,
    reference_observation=_half_cheetah_observation,
  )


def half_cheetah_velocity(
  *,
  backend: str = 'spring',
  horizon: int = 200,
  max_velocity: float = 2.0,
  n_frames: int | None = None,
  observation: str = 'brax',
  velocity: str = 'torso',
  reset: str = 'brax',
) -> Environment:
  """Run at the goal velocity g ~ U[0, max_velocity]: reward -|v - g| - 0.05 |a|^2.

  ``n_frames``: physics steps per step (None: brax's own, 0.05 s a step).
  ``observation``, ``velocity``, ``reset``: as ``half_cheetah_direction``'s."""
  max_velocity = check_positive_real(max_velocity, 'max_velocity')

  def goal(key):
    return jax.random.uniform(key, (), minval=0.0, maxval=max_velocity)

  return _family(
    'half_cheetah_velocity',
    'halfcheetah',
    goal,
    lambda g, v, a2: -jnp.abs(v - g) - 0.05 * a2,
    backend=backend,
    horizon=horizon,
    n_frames=n_frames,
    observation=observation,
    velocity=velocity,
    reset=reset,
    reference_observation=_half_cheetah_observation,
  )


def ant_direction(
  *,
  backend: str = 'spring',
  horizon: int = 200,
  n_frames: int | None = None,
  direction: float | None = None,
  velocity: str = 'torso',
) -> Environment:
  """Walk forward or backward: reward d v - 0.005 |a|^2 + 0.05; the episode ends
  when the torso's height leaves [0.2, 1].

  ``n_frames``: physics steps per step (None: brax's own, 10 of 0.005 s on
  ``spring``; the reference's ant takes 0.02 s a step, 4 here). ``direction``,
  ``velocity``: as ``half_cheetah_direction``'s."""
  return _family(
    'ant_direction',
    'ant',
    _direction(direction),
    lambda d, v, a2: d * v - 0.005 * a2 + 0.05,
    backend=backend,
    horizon=horizon,
    n_frames=n_frames,
    brax_options={'terminate_when_unhealthy': True, 'healthy_z_range': (0.2, 1.0)},
    velocity=velocity,
  )
