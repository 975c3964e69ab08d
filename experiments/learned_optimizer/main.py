"""Meta-train a learned optimizer on quadratics, then compare it with tuned optax
baselines on held-out problems (Andrychowicz et al., 2016).

  python -m experiments.learned_optimizer.main --workdir=runs/lopt_quadratic \
      [--config=experiments/learned_optimizer/configs/default.py] \
      [--config.num_updates=1000]

Re-running with the same --workdir resumes from its latest checkpoint.
"""

from experiments.common import cli
from experiments.learned_optimizer import train

if __name__ == '__main__':
  cli.run_experiment(
    'experiments.learned_optimizer', train.train_and_evaluate, 'default.py'
  )
