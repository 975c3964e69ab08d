"""Reptile (Nichol, Achiam & Schulman, 2018): the meta-gradient is theta - phi."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jmeta.estimators import reptile as reptile_estimator
from jmeta.gradient_learner import (
  OptimizerLearnerOptions,
  optimizer_learner,
  with_optimizer_learner_options,
)
from jmeta.inner_loop import LossFn
from jmeta.learner import MetaLearner
from jmeta.models.base import Model

if TYPE_CHECKING:
  from typing_extensions import Unpack


@with_optimizer_learner_options
def reptile(
  model: Model, loss_fn: LossFn, **options: Unpack[OptimizerLearnerOptions]
) -> MetaLearner:
  """Reptile: grad = mean_i (theta - phi_i), phi_i adapted on task i's support set.

  With outer ``optax.sgd(epsilon)`` this is Reptile's update
  theta <- theta + epsilon * mean_i (phi_i - theta). The query set is used only for
  the reported metrics; ``options`` are ``OptimizerLearnerOptions``. With ``inner_batch_size`` each inner step sees one
  minibatch of the support set, drawn without replacement as in the paper's code
  (``jmeta.inner_loop.minibatch_indices``, keyed by ``data_key(support_inputs)``);
  with it the paper trains on 10 shots per class in minibatches of 10 (5-way) or 20
  (20-way), one epoch per task. ``test_steps`` and ``test_batch_size`` set the
  adaptation of ``predict`` (the paper: 50 steps on minibatches of 5 or 10).
  """
  return optimizer_learner(
    model, loss_fn, estimator=reptile_estimator(), name='reptile', **options
  )


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'reptile': reptile}
