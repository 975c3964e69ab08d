"""Neural processes (CNP, NP, ANP) and MAML on GP and sinusoid function regression.

  python -m experiments.neural_processes.main --workdir=runs/np/anp_gp_random \
      --config=experiments/neural_processes/configs/anp.py:gp_random \
      [--config.num_iterations=6000]

A stopped run resumes from its workdir's latest checkpoint when started again with
the same command.
"""

from experiments.common import cli
from experiments.neural_processes import train

if __name__ == '__main__':
  cli.run_experiment('experiments.neural_processes', train.train_and_evaluate, 'anp.py')
