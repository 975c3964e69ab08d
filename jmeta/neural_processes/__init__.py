"""Neural processes as meta-learners, and the Gaussian-process tasks they learn.

* ``gp``: RBF-kernel GP regression tasks (fixed or random kernel per task) as
  ``jmeta.TaskBatch``es, keyed and jit-able, and the exact GP predictive
  log-likelihood, the oracle a neural process is compared with.
* ``models``: the conditional (Garnelo et al., 2018a), latent (2018b) and attentive
  (Kim et al., 2019) neural processes, each a ``NeuralProcess`` of pure functions.
* ``base``: ``neural_process_learner`` makes any of them a ``jmeta.MetaLearner``.

Example::

  tasks = gp_tasks(length_scale=(0.1, 0.6), signal_std=(0.1, 1.0))
  process = attentive_neural_process()
  learner = neural_process_learner(process, key=jax.random.key(1))
  params = process.init(jax.random.key(0), jnp.zeros((1, 1)))
  trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-4))
  state = trainer.init(learner.init(params))
  state, metrics = trainer.step(state, tasks.sample(key, 16, 10, 40))
"""

from jmeta.neural_processes import attention, gp
from jmeta.neural_processes.base import (
  NeuralProcess,
  Predictive,
  neural_process_learner,
  predictive_metrics,
)
from jmeta.neural_processes.gp import (
  GPTasks,
  RBFKernel,
  gp_log_likelihood,
  gp_posterior,
  gp_tasks,
  rbf_kernel,
  sample_gp,
)
from jmeta.neural_processes.models import (
  attentive_neural_process,
  conditional_neural_process,
  latent_neural_process,
)

__all__ = [
  'GPTasks',
  'NeuralProcess',
  'Predictive',
  'RBFKernel',
  'attention',
  'attentive_neural_process',
  'conditional_neural_process',
  'gp',
  'gp_log_likelihood',
  'gp_posterior',
  'gp_tasks',
  'latent_neural_process',
  'neural_process_learner',
  'predictive_metrics',
  'rbf_kernel',
  'sample_gp',
]
