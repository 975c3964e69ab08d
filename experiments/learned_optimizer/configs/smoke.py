"""A seconds-long run of the default config with a small LSTM, for tests."""

from experiments.learned_optimizer.configs import default


def get_config():
  config = default.get_config()
  config.dim = 3
  config.steps = 6
  config.truncation = 3
  config.num_tasks = 4
  config.num_updates = 6
  config.log_every = 2
  config.checkpoint_every = 3
  config.tune.num_tasks = 8
  config.tune.learning_rates = (0.01, 0.1)
  config.tune.baselines = ('sgd', 'adam')
  config.eval.num_tasks = 16
  return config
