"""The NTM copy task (Graves et al., 2014, Sec. 4.1): train, then cost vs length.

  python -m experiments.copy_task.main --workdir=runs/copy_ntm \
      [--config=experiments/copy_task/configs/ntm.py] [--config.num_updates=1000]
"""

import pathlib

from experiments.common import cli
from experiments.copy_task import train

_WORKDIR = cli.define_flags(
  str(pathlib.Path(__file__).parent / 'configs' / 'ntm.py'),
  'Directory for metrics, results and plots.',
)

if __name__ == '__main__':
  cli.run(
    'python -m experiments.copy_task.main',
    cli.train_main(train.train_and_evaluate, _WORKDIR),
    _WORKDIR,
  )
