"""Reptile on Omniglot, transductive (Nichol et al., 2018, Omniglot settings).

Inner loop: Adam (beta1 = 0) at 1e-3 for 5 steps (10 at 20-way); outer: SGD on the
Reptile direction with meta step 1.0 annealed linearly to 0, meta-batch 5, 100k
iterations; evaluation with 50 inner steps. The paper's inner minibatching over 10
training shots is replaced by full-batch steps on the episode's support set.
"""

from experiments.omniglot.configs.base import get_base_config


def get_config(setting: str = '5w1s'):
  config = get_base_config(setting)
  config.algorithm = 'reptile'
  config.meta_batch_size = 5
  config.inner_optimizer = 'adam'
  config.inner_learning_rate = 1e-3
  config.inner_steps = 10 if config.data.n_way == 20 else 5
  config.outer_optimizer = 'sgd'
  config.outer_learning_rate = 1.0
  config.outer_schedule = 'linear'
  config.num_iterations = 100_000
  config.eval.inner_steps = 50
  return config
