"""A seconds-long run of the default config at toy sizes, for tests."""

from experiments.rl2.configs import default


def get_config():
  config = default.get_config()
  config.update(
    {
      'num_arms': 3,
      'num_pulls': 4,
      'hidden_size': 8,
      'num_trials': 8,
      'num_iterations': 4,
      'log_every': 2,
      'checkpoint_every': 2,
    }
  )
  config.ppo.update({'epochs': 2, 'minibatches': 2})
  config.eval.num_tasks = 16
  return config
