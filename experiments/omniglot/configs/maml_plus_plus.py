"""MAML++ on Omniglot (Antoniou, Edwards & Storkey, 2019), the authors' Omniglot configs.

Every setting: Conv4 with max-pooling, 5 inner SGD steps at 0.1 (a mean loss, as
their code) at train and test, meta-batch 8, one query per class, multi-step loss
annealed over the first 5,000 iterations (10 epochs of 500), learned per-layer,
per-step inner rates, per-step batch-norm weights, second order from the start
(``first_order_to_second_order_epoch: -1``), Adam at 1e-3 cosine-annealed to 1e-5
over 50,000 iterations (100 epochs of 500). Per-step batch-norm statistics are
jmeta's transductive batch norm: every step normalises with its own batch.
"""

import ml_collections

from experiments.omniglot.configs.base import get_base_config


def get_config(setting: str = '5w1s'):
  config = get_base_config(setting)
  config.algorithm = 'maml_plus_plus'
  config.model.variant = 'maxpool'
  config.data.q_query = 1  # num_target_samples
  config.meta_batch_size = 8
  config.inner_steps = 5
  config.inner_learning_rate = 0.1
  config.eval.inner_steps = 5
  config.outer_schedule = 'cosine'
  config.outer_min_learning_rate = 1e-5
  config.num_iterations = 50_000
  config.maml_plus_plus = ml_collections.ConfigDict()
  config.maml_plus_plus.msl_anneal_iterations = 5_000  # 0: no multi-step loss
  config.maml_plus_plus.derivative_order_annealing_iterations = 0
  config.maml_plus_plus.learn_inner_rates = True
  config.maml_plus_plus.per_step_bn_weights = True
  return config
