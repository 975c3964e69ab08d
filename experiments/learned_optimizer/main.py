"""Meta-train a learned optimizer on quadratics, then compare it with tuned optax
baselines on held-out problems (Andrychowicz et al., 2016).

  python -m experiments.learned_optimizer.main --workdir=runs/lopt_quadratic \
      [--config=experiments/learned_optimizer/configs/default.py] \
      [--config.num_updates=1000]

Re-running with the same --workdir resumes from its latest checkpoint.
"""

import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.learned_optimizer import train

_DEFAULT_CONFIG = str(pathlib.Path(__file__).parent / 'configs' / 'default.py')

_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints, metrics, results and plots.'
)
config_flags.DEFINE_config_file(
  'config', _DEFAULT_CONFIG, 'Experiment configuration.', lock_config=True
)
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.INFO)
  train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
