"""Reptile on Omniglot, transductive (Nichol et al., 2018, Omniglot settings).

The settings of the paper's reference code (its first published commands):
training episodes have 10 shots per class, seen in one epoch of inner minibatches
(5 inner steps on batches of 10 at 5-way, 10 steps on batches of 20 at 20-way) with
Adam (beta1 = 0) at 1e-3 (5e-4 at 20-way), whose state is never reset: it passes
from task to task and update to update, and each test episode adapts from it (the
reference restores only the model's variables); outer SGD on the Reptile direction, meta
step 1.0 annealed linearly to 0, meta-batch 5, 100k iterations (200k at 20-way);
evaluation with 50 inner steps on minibatches of 5 (10 at 20-way) of the support
set. A 1-shot run is also tested 5-shot (``eval.extra_k_shots``): the paper's 1-shot
and 5-shot runs train identically. ``--config.inner_batch_size=0 --config.eval.inner_batch_size=0
--config.data.train_k_shot=0`` gives full-batch steps on test-shot episodes;
``--config.persistent_inner_state=False`` a fresh Adam state per task.
"""

from experiments.omniglot.configs.base import get_base_config


def get_config(setting: str = '5w1s'):
  config = get_base_config(setting)
  twenty = config.data.n_way == 20
  config.algorithm = 'reptile'
  config.meta_batch_size = 5
  config.data.train_k_shot = 10
  config.inner_optimizer = 'adam'
  config.persistent_inner_state = True
  config.inner_learning_rate = 5e-4 if twenty else 1e-3
  config.inner_steps = 10 if twenty else 5
  config.inner_batch_size = 20 if twenty else 10
  config.outer_optimizer = 'sgd'
  config.outer_learning_rate = 1.0
  config.outer_schedule = 'linear'
  config.num_iterations = 200_000 if twenty else 100_000
  config.eval.inner_steps = 50
  config.eval.inner_batch_size = 10 if twenty else 5
  # The paper's 1-shot and 5-shot runs of one way train alike: one run tests both.
  config.eval.extra_k_shots = (5,) if config.data.k_shot == 1 else ()
  return config
