"""CPU-seconds metric-learner runs on real Omniglot, for tests.

``--config=experiments/omniglot/configs/tiny_metric.py:protonet`` (or matching,
relation, siamese): 5-way 1-shot test episodes, small Conv4, few iterations.
"""

import importlib


def get_config(algorithm: str = 'protonet'):
  module = importlib.import_module(f'experiments.omniglot.configs.{algorithm}')
  config = module.get_config('5w1s')
  config.model.filters = 8
  config.data.train_n_way = 5
  config.data.train_q_query = 5
  config.data.q_query = 2
  config.meta_batch_size = 4
  config.outer_learning_rate = 1e-2
  config.outer_schedule = 'constant'
  config.num_iterations = 60
  config.log_every = 5
  config.checkpoint_every = 10
  config.eval_every = 15
  config.eval.val_episodes = 8
  config.eval.test_episodes = (8,)
  config.eval.episodes_per_call = 4
  return config
