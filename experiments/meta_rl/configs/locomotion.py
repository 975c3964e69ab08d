"""MAML-RL on the brax locomotion families (Finn et al., 2017, Sec. 5.3 and A.2).

A setting after the colon names the family: ``half_cheetah_direction`` (the
default), ``half_cheetah_velocity`` or ``ant_direction`` (``jmeta.rl.locomotion``;
``pip install 'jmeta[rl]'``). The paper's sizes and its code's training
(cbfinn/maml_rl, ``maml_examples/cluster_maml_trpo_cheetah.py``): 40 tasks per
meta-batch, episodes of 200 steps, one policy-gradient inner step at 0.1, a
policy of two hidden layers of 100 ReLU units, TRPO as the outer optimiser with
rllab's ``ConjugateGradientOptimizer`` (damping 1e-5, 10 CG iterations, a line
search of 15 steps shrinking by 0.8) and the inner step differentiated
symbolically, which is the ``'naive'`` estimator. Per family, the run the paper's
test scripts load (``maml_examples/test_maml_*.py``): episodes per task, the KL
bound and the snapshot (rllab's ``itr_N.pkl`` holds the params after N + 1 updates):

* half-cheetah direction: 20 episodes, max KL 0.02, ``itr_100``;
* half-cheetah velocity: 10 episodes, max KL 0.01, ``itr_475``;
* ant direction: 40 episodes, max KL 0.01, ``itr_575``.

The step time is the reference's: 0.01 s for the half-cheetah (3 of brax's
0.003125 s physics steps: 0.009375 s), 0.02 s for the ant (``n_frames`` 4). The
half-cheetah observes brax's 17 numbers and starts from brax's reset noise, and the
reward's velocity is the torso's; the reference's ``--config.env.observation=reference``
(the centre of mass appended, as its 20 numbers), ``--config.env.reset=reference``
(rllab's start) and ``--config.env.velocity=centre_of_mass`` (the whole robot's,
``get_body_comvel('torso')``) are options (``jmeta.rl.locomotion``).
Evaluation: 40 held-out tasks, 20 episodes per step, returns after 0..3 steps at
the inner rate, against a randomly initialised policy adapted the same way (the
reference's tests halve the rate after the first step and tune the random
policy's rate). ``locomotion_cpu_reference.py`` cuts it to a CPU budget.
"""

import ml_collections

from experiments.meta_rl.configs import trpo

# family -> (episodes per task, max KL, updates, physics steps per step).
REFERENCE = {
  'half_cheetah_direction': (20, 0.02, 101, 3),
  'half_cheetah_velocity': (10, 0.01, 476, 3),
  'ant_direction': (40, 0.01, 576, 4),
}
FAMILIES = tuple(REFERENCE)


def get_config(family: str = 'half_cheetah_direction'):
  if family not in FAMILIES:
    raise ValueError(
      f'unknown locomotion family {family!r}; expected one of {FAMILIES}.'
    )
  episodes, max_kl, iterations, n_frames = REFERENCE[family]
  config = trpo.get_config()
  config.env = ml_collections.ConfigDict(
    {'name': family, 'horizon': 200, 'n_frames': n_frames}
  )
  config.env.velocity = 'torso'
  if family.startswith('half_cheetah'):
    config.env.observation = 'brax'
    config.env.reset = 'brax'
  config.estimator = 'naive'
  config.trpo = ml_collections.ConfigDict(
    {
      'max_kl': max_kl,
      'damping': 1e-5,
      'cg_iterations': 10,
      'backtrack_ratio': 0.8,
      'line_search_steps': 15,
    }
  )
  config.num_tasks = 40
  config.num_episodes = episodes
  config.num_iterations = iterations
  config.checkpoint_every = 25
  config.eval.num_tasks = 40
  return config
