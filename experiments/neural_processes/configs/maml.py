"""MAML on the neural processes' sinusoid tasks, for the MSE comparison.

Finn et al. (2017), Sec. 5.1: an MLP 40-40 (ReLU), one inner SGD step at 0.01,
meta-batch 25, Adam 1e-3, 70,000 iterations, with 5 (or 10, 20) support points
and 10 query points. Here it trains on the same tasks as the neural processes: the
support set is the context (n drawn from ``context_sizes``), the query set the
``extra_targets`` points after it; at test it adapts for ``test_steps`` = 10 SGD
steps at 0.01 on the context, as Finn et al. evaluate, and predicts the targets.
"""

from experiments.neural_processes.configs import base


def get_config(family: str = 'sinusoid'):
  config = base.get_config(family)
  config.model = base.ml_collections.ConfigDict(
    {
      'name': 'maml',
      'hidden_sizes': (40, 40),
      'inner_steps': 1,
      'inner_learning_rate': 0.01,
      'test_steps': 10,
    }
  )
  config.batch_size = 25
  config.learning_rate = 1e-3
  config.paper_iterations = 70_000
  return config
