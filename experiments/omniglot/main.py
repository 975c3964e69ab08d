"""Omniglot meta-learning: MAML, first-order MAML and Reptile.

  python -m experiments.omniglot.main --workdir=runs/maml_5w1s \
      --config=experiments/omniglot/configs/maml.py:5w1s [--config.num_iterations=2000]

Re-running with the same --workdir resumes from its latest checkpoint.
"""

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
flags.mark_flags_as_required(['workdir', 'config'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
