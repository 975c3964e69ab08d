"""MAML-RL on 2D navigation (Finn et al., 2017): meta-train, then returns against
adaptation steps on held-out goals.

  python -m experiments.meta_rl.main --workdir=runs/meta_rl \
      [--config=experiments/meta_rl/configs/default.py] [--config.num_iterations=100]

Re-running with the same --workdir resumes from its latest checkpoint.
"""

from experiments.common import cli
from experiments.meta_rl import train

if __name__ == '__main__':
  cli.run_experiment('experiments.meta_rl', train.train_and_evaluate, 'default.py')
