"""The neural statistician on Omniglot: train, then evaluate on the test characters.

  python -m experiments.neural_statistician.main \
      --workdir=results/neural_statistician/cpu_budget [--config.num_iterations=4000]

A stopped run resumes from its workdir's latest checkpoint when started again with
the same command.
"""

from experiments.common import cli
from experiments.neural_statistician import train

if __name__ == '__main__':
  cli.run_experiment(
    'experiments.neural_statistician', train.train_and_evaluate, 'default.py'
  )
