"""Fields shared by the metric-learner configs (ProtoNet, Matching, Relation, Siamese).

The setting names the test episodes (e.g. '5w1s'); training episodes may use more
classes (``data.train_n_way``) and queries (``data.train_q_query``). Each run is
also tested with the other way in ``eval.extra_n_ways`` (5 <-> 20), same shot.
"""

import ml_collections

from experiments.omniglot.configs.base import get_base_config


def get_metric_config(setting: str) -> ml_collections.ConfigDict:
  config = get_base_config(setting)
  n_way = config.data.n_way
  config.data.protocol = 'vinyals'  # 1028/172/423 characters, rotations as classes
  config.data.train_n_way = n_way
  config.data.q_query = 5  # test queries per class (CPU budget: 15 costs 3x more)
  config.data.train_q_query = 5
  config.eval.extra_n_ways = (20,) if n_way == 5 else (5,)

  config.model.variant = 'maxpool'  # Vinyals et al.'s Conv4: 64-d embedding on 28x28
  # Statistics from the support set only: no query leaks into any embedding.
  config.model.batch_norm = 'support'

  config.metric = ml_collections.ConfigDict()
  config.metric.distance = 'squared_euclidean'  # protonet
  config.metric.full_context = False  # matching
  config.metric.relation_hidden = 8  # relation
  config.metric.loss = 'bce'  # siamese
  config.metric.margin = 1.0  # siamese distance losses and triplet embedding losses
  # An extra loss on the episode's embeddings: 'none', 'center',
  # 'triplet_batch_hard' or 'triplet_semi_hard'.
  config.metric.embedding_loss = 'none'
  config.metric.embedding_loss_weight = 0.0

  # No inner loop; these fields are unused by metric learners.
  config.inner_steps = 0
  config.inner_learning_rate = 0.0

  config.meta_batch_size = 1
  config.outer_learning_rate = 1e-3
  config.outer_schedule = 'step'
  config.outer_decay_every = 2_000
  config.outer_decay_rate = 0.5
  config.num_iterations = 20_000
  config.log_every = 100
  config.checkpoint_every = 1_000
  config.eval_every = 1_000
  return config
