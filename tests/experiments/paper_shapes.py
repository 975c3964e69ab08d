"""One meta-step and one evaluation of an Omniglot learner at its paper's episode
shapes, with the library's default batching, for ``test_paper_shapes.py``.

``python -m tests.experiments.paper_shapes ALGORITHM [SETTING]`` builds ALGORITHM
from its config at SETTING (default ``largest_setting(ALGORITHM)``, its paper's
largest episodes: 20-way 5-shot for most, so ProtoNet's 60-way 5-shot 5-query
training episodes, and 20-way 1-shot where the paper reports one shot only), sets
``batching='auto'`` (the library default, which is 'map' on CPU) and a meta-batch
of 2 (an XLA crash depends on the shapes inside one task, which 'map' compiles once
whatever the meta-batch) and at most 2 inner steps in training and at test (each
step has the same shapes; fewer steps compile faster), trains one step on episodes
that the runner's sampler draws from a synthetic image bank, and evaluates two test
episodes. It prints one JSON line; a crash ends the process.
"""

from __future__ import annotations

import importlib
import json
import sys

import jax
import numpy as np

import jmeta
from experiments.omniglot import learners, report, train
from experiments.omniglot.configs import base


def largest_setting(algorithm: str) -> str:
  """20-way at the largest shot the paper reports on Omniglot (``report.PAPER``).

  20 ways is every config's largest setting, also for Meta-SGD, whose entry lists
  5-way numbers only; a paper without Omniglot results (the meta-LSTM's) gets 5 shots.
  """
  shots = [base.parse_setting(s)[1] for s in report.PAPER[algorithm][0]]
  return f'20w{max(shots, default=5)}s'


def paper_config(algorithm: str, setting: str):
  module = importlib.import_module(f'experiments.omniglot.configs.{algorithm}')
  config = module.get_config(setting)
  config.batching = 'auto'
  config.meta_batch_size = 2
  config.inner_steps = min(config.inner_steps, 2)
  config.eval.inner_steps = min(config.eval.inner_steps, 2)
  return config


def bank(characters: int = 60, drawings: int = 20, seed: int = 0) -> jax.Array:
  """A synthetic uint8 image bank, wide enough for ProtoNet's 60-way episodes."""
  rng = np.random.default_rng(seed)
  return jax.numpy.asarray(
    rng.integers(0, 256, (characters, drawings, 28, 28), dtype=np.uint8)
  )


def step_and_evaluate(algorithm: str, setting: str | None = None) -> dict:
  setting = setting or largest_setting(algorithm)
  config = paper_config(algorithm, setting)
  data = bank()
  sampler = train.make_sampler(config, data, train=True)
  batch = sampler.sample_from(data, jax.random.key(0), config.meta_batch_size)
  learner = learners.make_learner(config)
  params = learner.init(jax.random.key(1), batch.support_inputs[0])
  trainer = jmeta.make_meta_trainer(learner.estimator, train.outer_optimizer(config))
  state, metrics = trainer.step(trainer.init(params), batch)
  jmeta.raise_if_nonfinite(state)
  test = train.make_sampler(config, data, n_way=config.data.n_way)
  accuracy = learner.accuracy(
    state.params, test.sample_from(data, jax.random.key(2), 2), config.data.n_way
  )
  return {
    'algorithm': algorithm,
    'setting': setting,
    # Support and query examples per training episode.
    'train_episode': [batch.support_inputs.shape[1], batch.query_inputs.shape[1]],
    'loss': float(metrics['loss']),
    'accuracy': [float(a) for a in np.asarray(accuracy)],
    'test_queries': config.data.n_way * config.data.q_query,
  }


if __name__ == '__main__':
  print(json.dumps(step_and_evaluate(*sys.argv[1:])))
