"""RL^2 on Bernoulli bandits with k = 10 arms and n = 500 pulls (k5_n500.py's
settings otherwise). A registered long run (``results/meta_rl/full/rl2_k10_n500``)."""

from experiments.rl2.configs import k5_n500


def get_config():
  config = k5_n500.get_config()
  config.num_arms = 10
  return config
