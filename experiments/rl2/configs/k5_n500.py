"""RL^2 on Bernoulli bandits with k = 5 arms and n = 500 pulls, Table 1's longest
trials: k5_n100.py's 128 trials per iteration and 800 iterations, a checkpoint
every 20. A registered long run (``results/meta_rl/full/rl2_k5_n500``)."""

from experiments.rl2.configs import k5_n100


def get_config():
  config = k5_n100.get_config()
  config.update({'num_pulls': 500, 'checkpoint_every': 20})
  return config
