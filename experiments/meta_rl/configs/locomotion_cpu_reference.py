"""``locomotion.py``'s training (the reference code's: naive estimator, rllab's TRPO,
0.01 s steps, episodes of 200 steps, 2 x 100 ReLU units, its KL bound and
iteration per family) in a budget of the shared 2-core CPU: 20 tasks of 10
episodes per meta-batch (the paper: 40 of 20, 10 for velocity); evaluation on 20
held-out tasks of 10 episodes, after 0..2 steps.
"""

from experiments.meta_rl.configs import locomotion


def get_config(family: str = 'half_cheetah_direction'):
  config = locomotion.get_config(family)
  config.num_tasks = 20
  config.num_episodes = 10
  config.log_every = 5
  config.eval.num_tasks = 20
  config.eval.num_episodes = 10
  config.eval.steps = 2
  return config
