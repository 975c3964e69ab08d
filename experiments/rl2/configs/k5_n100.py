"""RL^2 on Bernoulli bandits with k = 5 arms and n = 100 pulls: trials ten times
longer, so half as many per iteration, and 800 iterations (default.py's settings
otherwise)."""

from experiments.rl2.configs import default


def get_config():
  config = default.get_config()
  config.update(
    {
      'num_pulls': 100,
      'num_trials': 128,
      'num_iterations': 800,
      'checkpoint_every': 25,
    }
  )
  return config
