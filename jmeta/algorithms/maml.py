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

import optax

from jmeta.estimators import first_order, second_order
from jmeta.gradient_learner import (
  GradientOptions,
  gradient_learner,
  with_gradient_options,
)
from jmeta.inner_loop import LossFn
from jmeta.inner_rules import inner_rule
from jmeta.learner import MetaLearner
from jmeta.models.base import Model

if TYPE_CHECKING:
  from typing_extensions import Unpack


@with_gradient_options
def maml(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  first_order: bool = False,
  **options: Unpack[GradientOptions],
) -> MetaLearner:
  """MAML: ``inner_steps`` of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``), exact second order unless ``first_order``.

  ``options`` are ``GradientOptions``. At test, ``predict`` adapts for
  ``test_steps`` (default ``inner_steps``). ``remat=True`` recomputes each inner step in the backward pass instead of storing
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
    name='fomaml' if first_order else 'maml',
    **options,
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
