"""Sinusoid regression as in Finn et al. (2017), Sec. 5.1 and Appendix.

MLP 40-40 ReLU, 5-shot support, meta-batch 25, Adam 1e-3 outer, one inner SGD
step at alpha = 0.01 for MAML and first-order MAML. Evaluation: 1000 held-out tasks,
0..10 steps of each learner's own inner rule on 5 support points (SGD at 0.01 for
these four), MSE on 100 query points. ``all.py`` adds every other gradient learner.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Trained one after the other, each from the same initial params.
  config.algorithms = ('maml', 'fomaml', 'reptile', 'pretrain')
  config.hidden_sizes = (40, 40)
  config.num_support = 5
  config.num_query = 10
  config.meta_batch_size = 25
  config.outer_learning_rate = 1e-3
  config.num_iterations = 70_000  # MAML's metatrain_iterations for sinusoid
  config.log_every = 1_000
  config.batching = 'vmap'  # an MLP's per-task weights batch as plain batched matmuls

  config.maml = ml_collections.ConfigDict(
    {'inner_steps': 1, 'inner_learning_rate': 0.01}
  )
  config.fomaml = ml_collections.ConfigDict(
    {'inner_steps': 1, 'inner_learning_rate': 0.01}
  )
  # Reptile needs several inner steps: with one SGD step its update is the joint
  # training gradient (Nichol et al., 2018, Sec. 5). With 10 steps at 0.01 the inner
  # loop diverged on one task at step 33,322 (jmeta stopped the run there); 5 steps
  # train stably.
  config.reptile = ml_collections.ConfigDict(
    {'inner_steps': 5, 'inner_learning_rate': 0.01}
  )
  # Fine-tuned at test as Finn et al. fine-tune the baseline: SGD at 0.01.
  config.pretrain = ml_collections.ConfigDict({'test_learning_rate': 0.01})

  config.eval = ml_collections.ConfigDict()
  config.eval.seed = 1_000_003  # a key stream disjoint from training's
  config.eval.num_tasks = 1_000
  config.eval.num_query = 100
  config.eval.steps = 10
  config.eval.report_steps = (0, 1, 5, 10)
  config.eval.plot_tasks = 3
  return config
