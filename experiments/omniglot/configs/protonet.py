"""Prototypical networks on Omniglot (Snell et al., 2017).

Training: 60-way episodes with 5 queries per class, train shot = test shot, Conv4
with max-pooling, Adam at 1e-3 halved every 2000 episodes, Vinyals split with
rotations. Usage: ``--config=experiments/omniglot/configs/protonet.py:5w1s`` (also
tested 20-way 1-shot).
"""

from experiments.omniglot.configs.metric_base import get_metric_config


def get_config(setting: str = '5w1s'):
  config = get_metric_config(setting)
  config.algorithm = 'protonet'
  config.data.train_n_way = 60
  # One episode per step, so vmap costs nothing over map. (The XLA:CPU segfault once
  # seen here with 'map' on jaxlib 0.10.2 was a YNNPACK bug, avoided since
  # class_means became a segment sum: jmeta/xla_workarounds.py.)
  config.batching = 'vmap'
  # Its test, 100 episodes per call, runs 2.8x faster and in a sixth of the memory
  # one episode at a time ('auto': map on CPU) than vmapped, 169.6 against 60.5
  # episodes/s, 493 against 3071 MiB (benchmarks/results/protonet_eval_batching/).
  config.eval.batching = 'auto'
  # conv_impl stays 'auto' (patches + matmul on CPU): with the strided-slice patches
  # it is 3.9x faster than XLA's convolution on a 60-way 5-shot 5-query episode, at
  # 1.3x the peak memory (benchmarks/results/cpu_meta_step.md).
  return config
