"""Siamese networks on Omniglot (Koch et al., 2015), tested one-shot by nearest support.

A twin Conv4 with Koch's weighted L1 pair head, trained with class-balanced binary
cross-entropy on every (query, support) pair of 20-way 1-shot episodes (one query per
class), meta-batch 8, Adam at 1e-3. ``--config.metric.loss`` swaps in the
contrastive or triplet losses. Only 1-shot settings are meaningful.
"""

from experiments.omniglot.configs.metric_base import get_metric_config


def get_config(setting: str = '5w1s'):
  config = get_metric_config(setting)
  config.algorithm = 'siamese'
  config.data.train_n_way = 20
  config.data.train_q_query = 1
  config.meta_batch_size = 8
  config.outer_schedule = 'constant'
  return config
