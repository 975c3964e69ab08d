"""MAML and first-order MAML (Finn, Abbeel & Levine, 2017).

Task i adapts by ``inner_steps`` updates of an inner optimizer (default SGD) on its
support set, phi_i = U_i^k(theta), and

* ``maml``: grad = mean_i (dphi_i/dtheta)^T grad L_i^query(phi_i), exact second
  order through every inner step;
* ``fomaml``: grad = mean_i grad L_i^query(phi_i), dphi_i/dtheta taken as I
  (Sec. 5.2).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from jmeta.estimators import through_inner_loop
from jmeta.gradient_learner import (
  OptimizerLearnerOptions,
  optimizer_learner,
  with_optimizer_learner_options,
)
from jmeta.inner_loop import LossFn
from jmeta.inner_rules import HeadSelector
from jmeta.learner import MetaLearner
from jmeta.models.base import Model

if TYPE_CHECKING:
  from typing_extensions import Unpack


@with_optimizer_learner_options
def maml(
  model: Model,
  loss_fn: LossFn,
  *,
  first_order: bool = False,
  adapts: HeadSelector | None = None,
  **options: Unpack[OptimizerLearnerOptions],
) -> MetaLearner:
  """MAML: ``inner_steps`` of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``), exact second order unless ``first_order``.

  ``adapts`` selects the leaves the inner loop updates (a top-level key or a
  predicate on a key path, as ``jmeta.inner_rules.head_mask`` takes); the others
  are trained by the outer update alone. None, the default, adapts every leaf.
  MAML's reference code leaves its batch-norm offsets out of the inner loop:
  ``adapts=jmeta.models.excluding_batch_norm_offsets`` for ``jmeta.conv4``.

  ``options`` are ``OptimizerLearnerOptions``. At test, ``predict`` adapts for
  ``test_steps`` (default ``inner_steps``). ``remat=True`` recomputes each inner step in the backward pass instead of storing
  its intermediates (``jax.checkpoint``), bounding memory for long inner loops;
  ``batching='chunked'`` bounds it over tasks.

  Example::

    learner = jmeta.maml(model, jmeta.losses.mean_squared_error, inner_steps=1,
                         inner_learning_rate=0.01)
    grads, metrics = learner.meta_gradient(params, batch)
  """
  return optimizer_learner(
    model,
    loss_fn,
    head=adapts,
    estimator=through_inner_loop(first_order),
    name='fomaml' if first_order else 'maml',
    **options,
  )


def fomaml(model: Model, loss_fn: LossFn, **options) -> MetaLearner:
  """First-order MAML: ``maml(..., first_order=True)``, with the same options."""
  return maml(model, loss_fn, first_order=True, **options)


# maml's keyword options less first_order, for help() and for callers that read
# the signature (the experiments pass the options a factory names).
fomaml.__signature__ = inspect.signature(maml).replace(
  parameters=[
    p for p in inspect.signature(maml).parameters.values() if p.name != 'first_order'
  ]
)


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'maml': maml, 'fomaml': fomaml}
