"""RL^2 on Bernoulli bandits with k = 10 arms and n = 10 pulls (default.py's
settings otherwise)."""

from experiments.rl2.configs import default


def get_config():
  config = default.get_config()
  config.num_arms = 10
  return config
