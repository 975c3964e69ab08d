"""A seconds-long run of the default config, for tests and a first look."""

from experiments.sinusoid.configs import default


def get_config():
  config = default.get_config()
  config.num_iterations = 30
  config.log_every = 10
  config.eval.num_tasks = 16
  config.eval.num_query = 20
  return config
