"""Matching networks on Omniglot (Vinyals et al., 2016).

Cosine attention over the support embeddings; ``--config.metric.full_context=True``
adds the full-context embeddings (a bidirectional LSTM over the support set, an
attention LSTM over each query). Trained on episodes of the test way and shot,
meta-batch 16, Adam at 1e-3.
"""

from experiments.omniglot.configs.metric_base import get_metric_config


def get_config(setting: str = '5w1s'):
  config = get_metric_config(setting)
  config.algorithm = 'matching'
  config.meta_batch_size = 16
  config.outer_schedule = 'constant'
  return config
