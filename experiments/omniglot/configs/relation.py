"""Relation networks on Omniglot (Sung et al., 2018).

Training queries per class as in the paper: 19 (5w1s), 15 (5w5s), 10 (20w1s),
5 (20w5s); one episode per step, Adam at 1e-3 halved every 100k episodes, MSE to
one-hot targets. The paper trains for 1M episodes.
"""

from experiments.omniglot.configs.metric_base import get_metric_config

TRAIN_QUERIES = {'5w1s': 19, '5w5s': 15, '20w1s': 10, '20w5s': 5}


def get_config(setting: str = '5w1s'):
  config = get_metric_config(setting)
  config.algorithm = 'relation'
  config.model.variant = 'relation'  # the paper's encoder: pooling in blocks 1-2 only
  config.data.train_q_query = TRAIN_QUERIES[setting]
  config.outer_decay_every = 100_000
  config.num_iterations = 1_000_000
  return config
