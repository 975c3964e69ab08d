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

import optax

from jmeta.estimators import first_order, second_order
from jmeta.gradient_learner import gradient_learner
from jmeta.inner_loop import LossFn
from jmeta.inner_rules import inner_rule
from jmeta.learner import MetaLearner, MetricsFn
from jmeta.models.base import Model


def maml(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  test_steps: int | None = None,
  first_order: bool = False,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
) -> MetaLearner:
  """MAML: ``inner_steps`` of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``), exact second order unless ``first_order``.

  At test, ``predict`` adapts for ``test_steps`` (default ``inner_steps``).
  ``remat=True`` recomputes each inner step in the backward pass instead of storing
  its intermediates (``jax.checkpoint``), bounding memory for long inner loops;
  ``batching='chunked'`` bounds it over tasks.

  Example::

    learner = jmeta.maml(model, jmeta.losses.mean_squared_error, inner_steps=1,
                         inner_learning_rate=0.01)
    grads, metrics = learner.meta_gradient(params, batch)
  """
  return gradient_learner(
    model,
    loss_fn,
    rule=inner_rule(inner_optimizer, inner_learning_rate),
    estimator=_estimators[first_order](),
    inner_steps=inner_steps,
    test_steps=test_steps,
    batching=batching,
    chunk_size=chunk_size,
    metrics_fn=metrics_fn,
    remat=remat,
    name='fomaml' if first_order else 'maml',
  )


_estimators = {False: second_order, True: first_order}


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
