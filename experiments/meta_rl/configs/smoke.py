"""A seconds-long run of the default config at toy sizes, for tests and a first look."""

from experiments.meta_rl.configs import default


def get_config():
  config = default.get_config()
  config.env.horizon = 5
  config.policy.hidden_sizes = (8,)
  config.num_tasks = 2
  config.num_episodes = 3
  config.num_iterations = 4
  config.log_every = 2
  config.checkpoint_every = 2
  config.eval.num_tasks = 3
  config.eval.num_episodes = 2
  config.eval.steps = 2
  return config
