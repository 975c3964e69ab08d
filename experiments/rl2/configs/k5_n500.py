"""RL^2 on Bernoulli bandits with k = 5 arms and n = 500 pulls, Table 1's longest
trials: k5_n100.py's 128 trials per iteration, 800 iterations (as the n = 100 runs
were continued to), a checkpoint every 20, and the value head on a GRU of its own,
as the paper's baseline network: with the head on the policy's GRU the same run
returned 360.99 against the paper's 401.6
(``results/meta_rl/rl2_ablations/k5_n500_shared_value``). A registered long run
(``results/meta_rl/full/rl2_k5_n500``)."""

from experiments.rl2.configs import k5_n100


def get_config():
  config = k5_n100.get_config()
  config.update(
    {
      'num_pulls': 500,
      'num_iterations': 800,
      'checkpoint_every': 20,
      'separate_value': True,
    }
  )
  return config
