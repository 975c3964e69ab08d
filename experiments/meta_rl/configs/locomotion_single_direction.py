"""TRPO on one fixed direction, with no inner step: how fast a policy learns to
run on this physics, to read MAML-RL's adapted returns against.

The reference's oracle run (cbfinn/maml_rl, ``maml_examples/cluster_trpo_cheetah.py``
with ``HalfCheetahEnvDirecOracle``) trains TRPO with 100 episodes of 200 steps per
update and max KL 0.01, on an environment whose observation includes the direction,
drawn per episode; here the direction is fixed (``config.env.direction``, 1.0:
forward), so the policy learns one of the two. Otherwise ``locomotion.py``'s
training: 0.01 s steps, 2 x 100 ReLU units, rllab's conjugate-gradient settings.
Evaluation: 10 "tasks" (all the same direction; they give the confidence
interval) of 10 episodes, before and after up to 2 policy-gradient steps (the
steps are not part of its training). A setting after
the colon names the family: ``half_cheetah_direction`` (default) or
``ant_direction``. ``config.env.backend`` picks brax's pipeline: ``generalized``
with ``n_frames`` 1 is the half-cheetah of brax's own MJCF model, with the
reference's gears and its 0.01 s step (``spring``, the default, changes both).
"""

from experiments.meta_rl.configs import locomotion

FAMILIES = ('half_cheetah_direction', 'ant_direction')


def get_config(family: str = 'half_cheetah_direction'):
  if family not in FAMILIES:
    raise ValueError(
      f'unknown direction family {family!r}; expected one of {FAMILIES}.'
    )
  config = locomotion.get_config(family)
  config.env.direction = 1.0
  config.env.backend = 'spring'
  config.inner_steps = 0
  config.num_tasks = 1
  config.num_episodes = 100
  config.trpo.max_kl = 0.01
  config.num_iterations = 101
  config.log_every = 5
  config.eval.num_tasks = 10
  config.eval.num_episodes = 10
  config.eval.steps = 2
  return config
