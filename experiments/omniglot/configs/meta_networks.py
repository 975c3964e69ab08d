"""Meta Networks on Omniglot (Munkhdalai & Yu, 2017), as their code trains them.

The reference (tsendeemts/MetaNet, ``train_omniglot.py`` with ``MetaNetFull``): one
episode of the test way and shot per update with 10 training queries per class,
Adam at 1e-3, and the meta-gradient clipped to global norm 10. The reference sums
its loss over the episode's queries and jmeta's metric loss is their mean, so the
clip here is 10 / (queries per episode): the same update. Each setting trains its
own learner (its heads have n_way outputs), so no extra way is tested. The
reference loop has no stopping rule (100,000 rounds of 100 episodes), so the
paper's number of updates is unknown; ``num_iterations`` is a budget, not theirs.
Test episodes are the Omniglot table's (5 queries per class; the reference tests
on 10).
"""

from experiments.omniglot.configs.metric_base import get_metric_config

TRAIN_QUERIES = 10  # per class, the reference's nb_samples_per_class_train
REFERENCE_CLIP = 10.0  # chainer.optimizer.GradientClipping(10) on the summed loss


def get_config(setting: str = '5w1s'):
  config = get_metric_config(setting)
  config.algorithm = 'meta_networks'
  config.model.variant = 'meta_networks'  # five 64-filter blocks, pooled to 1x1
  config.data.train_q_query = TRAIN_QUERIES
  config.eval.extra_n_ways = ()
  config.outer_schedule = 'constant'
  config.outer_clip_norm = REFERENCE_CLIP / (config.data.n_way * TRAIN_QUERIES)
  config.num_iterations = 20_000
  return config
