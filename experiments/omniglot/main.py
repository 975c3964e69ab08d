"""Omniglot meta-learning: MAML, first-order MAML and Reptile.

  python -m experiments.omniglot.main --workdir=runs/maml_5w1s \
      --config=experiments/omniglot/configs/maml.py:5w1s [--config.num_iterations=2000]

Re-running with the same --workdir resumes from its latest checkpoint. On a CPU the
meta-batch is sharded over one XLA host device per core (``--cpu_devices``), which
ran meta-updates faster than one device using every core
(``benchmarks/results/cpu_meta_step.md``).
"""

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.omniglot import train

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints and metrics.'
)
config_flags.DEFINE_config_file(
  'config',
  None,
  'Config file, e.g. experiments/omniglot/configs/maml.py:5w1s.',
  lock_config=True,
)
_CPU_DEVICES = flags.DEFINE_integer(
  'cpu_devices',
  0,
  'XLA host devices to split the CPU into when JAX runs on it; the meta-batch is '
  'sharded over them. 0: one per core; 1: a single device. No effect on GPU or TPU.',
)
flags.mark_flags_as_required(['workdir', 'config'])


def cpu_devices(flag: int) -> int:
  """The host device count for ``--cpu_devices``: ``flag``, or one per core for 0."""
  if flag < 0:
    raise app.UsageError(f'--cpu_devices must be >= 0, got {flag}.')
  return flag or os.cpu_count() or 1


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  # Before anything touches a JAX backend; the CPU platform only.
  jax.config.update('jax_num_cpu_devices', cpu_devices(_CPU_DEVICES.value))
  train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
