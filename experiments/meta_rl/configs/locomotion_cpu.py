"""``locomotion.py`` cut to a budget of the shared 2-core CPU, to show whether the
pipeline learns (returns after adaptation above those before), not the paper's
numbers: 10 tasks of 10 episodes of 100 steps, a policy of 2 x 64 units, Adam at
3e-3 (the 2D-navigation config's rate) instead of TRPO, 150 meta-iterations;
evaluation on 20 held-out tasks of 10 episodes, after 0..2 steps.

Adam at 3e-3 (``results/meta_rl/locomotion/half_cheetah_direction``) and at 1e-2 for
60 iterations (``half_cheetah_direction_adam``) made the returns worse.
``locomotion_cpu_trpo.py`` is the same budget with a TRPO step. Both keep what
they ran with before ``locomotion.py`` took the reference code's training
(``first_settings``): the DiCE estimator, brax's 0.05 s step and
pytorch-maml-rl's trust region. ``locomotion_cpu_reference.py`` is the budget of
the reference's training.
"""

from experiments.meta_rl.configs import locomotion, trpo


def first_settings(config):
  """The estimator, step time and trust region these budgets' runs had."""
  config.estimator = 'dice'
  del config.env.n_frames
  config.trpo = trpo.get_config().trpo
  return config


def cpu_budget(config):
  """The CPU sizes above, on a ``locomotion.py`` config."""
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


def get_config(family: str = 'half_cheetah_direction'):
  config = first_settings(locomotion.get_config(family))
  config.outer = 'adam'
  del config.trpo
  config.learning_rate = 3e-3
  return cpu_budget(config)
