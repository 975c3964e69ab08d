"""Neural processes as meta-learners, and the Gaussian-process tasks they learn.

* ``gp``: RBF-kernel GP regression tasks (fixed or random kernel per task) as
  ``jmeta.TaskBatch``es, keyed and jit-able, and the exact GP predictive
  log-likelihood, the oracle a neural process is compared with.
"""

from jmeta.neural_processes import gp
from jmeta.neural_processes.gp import (
  GPTasks,
  RBFKernel,
  gp_log_likelihood,
  gp_posterior,
  gp_tasks,
  rbf_kernel,
  sample_gp,
)

__all__ = [
  'GPTasks',
  'RBFKernel',
  'gp',
  'gp_log_likelihood',
  'gp_posterior',
  'gp_tasks',
  'rbf_kernel',
  'sample_gp',
]
