"""One meta-step and one evaluation of an Omniglot learner at its paper's episode
shapes, with the library's default batching, for ``test_paper_shapes.py``.

``python -m tests.experiments.paper_shapes ALGORITHM [SETTING]`` builds ALGORITHM
from its config at SETTING (default '20w5s', the largest episodes: 20-way 5-shot
for the gradient-based learners, ProtoNet's 60-way 5-shot 5-query training
episodes), sets ``batching='auto'`` (the library default, which is 'map' on CPU) and a
meta-batch of 2 (an XLA crash depends on the shapes inside one task, which 'map'
compiles once whatever the meta-batch), trains one step on random images and
evaluates two test episodes. It prints one JSON line; a crash ends the process.
"""

from __future__ import annotations

import importlib
import json
import sys

import jax
import numpy as np

import jmeta
from experiments.omniglot import learners, train


def paper_config(algorithm: str, setting: str):
  module = importlib.import_module(f'experiments.omniglot.configs.{algorithm}')
  config = module.get_config(setting)
  config.batching = 'auto'
  config.meta_batch_size = 2
  return config


def random_batch(n_way: int, k_shot: int, q_query: int, tasks: int, seed: int):
  rng = np.random.default_rng(seed)

  def images(n):
    return rng.random((tasks, n, 28, 28, 1), dtype=np.float32)

  def labels(k):
    return np.tile(np.arange(n_way, dtype=np.int32), (tasks, k))

  return jmeta.TaskBatch(
    images(n_way * k_shot), labels(k_shot), images(n_way * q_query), labels(q_query)
  )


def step_and_evaluate(algorithm: str, setting: str = '20w5s') -> dict:
  config = paper_config(algorithm, setting)
  n_way, k_shot = learners.train_n_way(config), learners.train_k_shot(config)
  q_query = config.data.get('train_q_query', None) or config.data.q_query
  batch = random_batch(n_way, k_shot, q_query, config.meta_batch_size, seed=0)
  learner = learners.make_learner(config)
  params = learner.init(jax.random.key(0), batch.support_inputs[0])
  trainer = jmeta.make_meta_trainer(learner.estimator, train.outer_optimizer(config))
  state, metrics = trainer.step(trainer.init(params), batch)
  jmeta.raise_if_nonfinite(state)
  test = random_batch(config.data.n_way, config.data.k_shot, config.data.q_query, 2, 1)
  accuracy = learner.accuracy(state.params, test, config.data.n_way)
  return {
    'algorithm': algorithm,
    'train_episode': [n_way, k_shot, q_query],
    'loss': float(metrics['loss']),
    'accuracy': [float(a) for a in np.asarray(accuracy)],
    'test_queries': config.data.n_way * config.data.q_query,
  }


if __name__ == '__main__':
  print(json.dumps(step_and_evaluate(*sys.argv[1:])))
