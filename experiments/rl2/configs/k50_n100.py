"""RL^2 on Bernoulli bandits with k = 50 arms and n = 100 pulls (k5_n100.py's
settings otherwise)."""

from experiments.rl2.configs import k5_n100


def get_config():
  config = k5_n100.get_config()
  config.num_arms = 50
  return config
