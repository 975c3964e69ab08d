"""``locomotion.py`` cut to a budget of the shared 2-core CPU, to show whether the
pipeline learns (returns after adaptation above those before), not the paper's
numbers: 10 tasks of 10 episodes of 100 steps, a policy of 2 x 64 units, Adam at
3e-3 (the 2D-navigation config's rate) instead of TRPO, 150 meta-iterations;
evaluation on 20 held-out tasks of 10 episodes, after 0..2 steps.

Why not TRPO: its jitted step on half-cheetah hung inside XLA:CPU (jaxlib 0.10.2)
every time it was tried here (``results/meta_rl/locomotion/half_cheetah_direction_trpo_hang``).
Adam at 1e-2 for 60 iterations made the returns worse
(``results/meta_rl/locomotion/half_cheetah_direction_adam``).
"""

from experiments.meta_rl.configs import locomotion


def get_config(family: str = 'half_cheetah_direction'):
  config = locomotion.get_config(family)
  config.outer = 'adam'
  del config.trpo
  config.learning_rate = 3e-3
  config.env.horizon = 100
  config.policy.hidden_sizes = (64, 64)
  config.num_tasks = 10
  config.num_episodes = 10
  config.num_iterations = 150
  config.log_every = 5
  config.checkpoint_every = 25
  config.eval.num_tasks = 20
  config.eval.num_episodes = 10
  config.eval.steps = 2
  return config
