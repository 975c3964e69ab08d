"""MANN (Santoro et al., 2016) on the Omniglot table's N-way K-shot episodes.

``jmeta.metric.mann_learner``: the support set, each image with its label, is one
sequence through the LRUA MANN; each query is one step after it with no label,
answered from that state. The paper's model (LSTM controller of 200 units, 128 x 40
memory, 4 read heads, usage decay 0.95, ``config.mann``) and its training as both
reference implementations run it: Adam at 1e-3 on batches of 16 episodes, a
constant rate. The images are the table's 28 x 28 drawings, flattened (the paper's
one-shot sequences use 20 x 20). The paper reports no N-way K-shot numbers; the
length is the reference code's 100,000 updates. The model has ``n_way`` outputs,
so each setting trains its own and no extra way is tested.
"""

import ml_collections

from experiments.omniglot.configs.metric_base import get_metric_config


def get_config(setting: str = '5w1s'):
  config = get_metric_config(setting)
  config.algorithm = 'mann'
  config.model.variant = 'mann'  # its own network: no Conv4
  config.mann = ml_collections.ConfigDict(
    dict(
      memory_slots=128, memory_width=40, controller_size=200, read_heads=4, gamma=0.95
    )
  )
  config.eval.extra_n_ways = ()
  config.meta_batch_size = 16
  config.outer_schedule = 'constant'
  config.num_iterations = 100_000
  return config
