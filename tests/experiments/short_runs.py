"""Short, deterministic training runs of every Omniglot algorithm, for regression.

``short_run(algorithm)`` builds the algorithm from its own config file (shrunk: a
small Conv4, a meta-batch of 2, schedules that switch within the run) through the
experiments' public path, trains ``STEPS`` meta-steps on a synthetic uint8 bank and
returns the training losses and the test-time accuracies of a fixed batch.
``golden_losses.json`` holds these values from the commit before the meta-learner
redesign (issue 17); ``test_short_runs.py`` compares them bit for bit.

Run ``python -m tests.experiments.short_runs`` to print the values (it never
rewrites the golden file).
"""

from __future__ import annotations

import importlib
import json
import platform

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import jmeta
from experiments.omniglot import learners, train

STEPS = 3
ALGORITHMS = (
  'maml',
  'fomaml',
  'reptile',
  'imaml',
  'meta_sgd',
  'anil',
  'maml_plus_plus',
  'protonet',
  'matching',
  'relation',
  'siamese',
)


def short_config(algorithm: str):
  config = importlib.import_module(
    f'experiments.omniglot.configs.{algorithm}'
  ).get_config('5w1s')
  config.model.filters = 4
  config.meta_batch_size = 2
  if algorithm == 'maml_plus_plus':
    # Every phase of the schedules within three steps: multi-step loss at first
    # order, multi-step loss at second order, then the final-step loss.
    config.maml_plus_plus.msl_anneal_iterations = 2
    config.maml_plus_plus.derivative_order_annealing_iterations = 1
  if algorithm in learners.METRIC_ALGORITHMS:
    config.data.train_n_way = 5
    config.data.train_q_query = 2
    config.data.q_query = 2
  if algorithm == 'reptile':
    config.eval.inner_steps = 4
    # The golden values were recorded before the reptile config kept its inner
    # Adam state from task to task (tests/test_gradient_learner.py checks that).
    config.persistent_inner_state = False
  if algorithm == 'imaml':
    # The golden losses were recorded with the proximal inner loop the imaml config
    # ran before it followed the reference code (5 steps at 1 / lambda, undamped CG).
    config.imaml = ml_collections.ConfigDict({'regularization': 2.0, 'cg_steps': 5})
    config.inner_steps = config.eval.inner_steps = 5
    config.inner_learning_rate = 0.5
    config.outer_adam_eps = 1e-8
  return config


def bank() -> jax.Array:
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.integers(0, 256, (24, 20, 28, 28), dtype=np.uint8))


def short_run(algorithm: str) -> dict:
  """Training losses (one per step) and per-task test accuracies, as Python floats."""
  return train_briefly(short_config(algorithm))


def train_briefly(config) -> dict:
  """``STEPS`` meta-steps of ``config``'s learner on the synthetic bank, then test."""
  data = bank()
  sampler = train.make_sampler(config, data, train=True)
  learner = learners.make_learner(config)
  probe = sampler.sample(jax.random.key(0), 1)
  params = learner.init(jax.random.key(1), probe.support_inputs[0])
  trainer = jmeta.make_meta_trainer(learner.estimator, train.outer_optimizer(config))
  state = trainer.init(params)
  losses = []
  for step in range(STEPS):
    batch = sampler.sample_from(data, jax.random.key(10 + step), config.meta_batch_size)
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics['loss']))
  jmeta.raise_if_nonfinite(state)
  test = train.make_sampler(config, data, n_way=config.data.n_way)
  batch = test.sample_from(data, jax.random.key(99), 2)
  accuracy = learner.accuracy(state.params, batch, config.data.n_way)
  return {'losses': losses, 'accuracy': [float(a) for a in np.asarray(accuracy)]}


def vector_extension() -> str:
  """The widest x86 vector extension the CPU reports (XLA:CPU picks its kernels by
  it), or '' where /proc/cpuinfo gives no flags."""
  try:
    with open('/proc/cpuinfo') as f:
      flags = next(
        (line.split(':', 1)[1].split() for line in f if line.startswith('flags')), []
      )
  except OSError:
    return ''
  for flag, name in (('avx512f', 'AVX-512'), ('avx2', 'AVX2'), ('avx', 'AVX')):
    if flag in flags:
      return name
  return ''


def machine() -> str:
  """CPU model and vector extension, jax version, architecture: where the same
  string means the same floats. The model name alone does not: a virtual
  'AMD EPYC' with AVX-512 gave losses that differ from the recorded ones in the
  seventh digit."""
  from experiments.common.run_info import cpu_model

  vector = vector_extension()
  cpu = f'{cpu_model()} ({vector})' if vector else cpu_model()
  return f'{cpu} / jax {jax.__version__} / {platform.machine()}'


if __name__ == '__main__':
  out = {'machine': machine(), 'runs': {}}
  for name in ALGORITHMS:
    out['runs'][name] = short_run(name)
    print(name, out['runs'][name], flush=True)
  print(json.dumps(out, indent=2))
