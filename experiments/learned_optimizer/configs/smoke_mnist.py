"""A seconds-long MNIST run for tests: a 4-unit MLP, batches of 8, 4 steps."""

from experiments.learned_optimizer.configs import mnist, smoke


def get_config():
  config = mnist.get_config()
  for field in ('num_updates', 'log_every', 'checkpoint_every'):
    config[field] = smoke.get_config()[field]
  config.steps = 4
  config.truncation = 2
  config.num_tasks = 2
  config.mnist.hidden_sizes = (4,)
  config.mnist.batch_size = 8
  config.tune.num_tasks = 4
  config.tune.learning_rates = (0.1, 1.0)
  config.tune.baselines = ('sgd',)
  config.eval.num_tasks = 2
  return config
