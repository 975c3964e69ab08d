"""A seconds-long run of the default config at toy sizes, for tests."""

from experiments.rl2.configs import default


def get_config():
  config = default.get_config()
  config.num_arms = 3
  config.num_pulls = 4
  config.hidden_size = 8
  config.num_trials = 8
  config.ppo.epochs = 2
  config.ppo.minibatches = 2
  config.num_iterations = 4
  config.log_every = 2
  config.checkpoint_every = 2
  config.eval.num_tasks = 16
  return config
