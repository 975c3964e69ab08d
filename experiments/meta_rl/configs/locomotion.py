"""MAML-RL on the brax locomotion families (Finn et al., 2017, Sec. 5.3 and A.2).

A setting after the colon names the family: ``half_cheetah_direction`` (the
default), ``half_cheetah_velocity`` or ``ant_direction`` (``jmeta.rl.locomotion``;
``pip install 'jmeta[rl]'``). The paper's sizes: 40 tasks per meta-batch, 20
episodes of 200 steps per task and per step, one policy-gradient inner step at
0.1, a policy of two hidden layers of 100 ReLU units, TRPO as the outer optimiser
(``jmeta.rl.maml_trpo_step`` with pytorch-maml-rl's trust region). Inner advantages
as the 2D-navigation config. The paper does not state its number of iterations
for these tasks; pytorch-maml-rl runs 500 meta-batches. Evaluation: 40 held-out
tasks, 20 episodes per step, returns after 0..3 steps, against a randomly
initialised policy adapted the same way. ``locomotion_cpu.py`` cuts it to a CPU
budget.
"""

import ml_collections

from experiments.meta_rl.configs import trpo

FAMILIES = ('half_cheetah_direction', 'half_cheetah_velocity', 'ant_direction')


def get_config(family: str = 'half_cheetah_direction'):
  if family not in FAMILIES:
    raise ValueError(
      f'unknown locomotion family {family!r}; expected one of {FAMILIES}.'
    )
  config = trpo.get_config()
  config.env = ml_collections.ConfigDict({'name': family, 'horizon': 200})
  config.num_tasks = 40
  config.num_episodes = 20
  config.num_iterations = 500
  config.eval.num_tasks = 40
  return config
