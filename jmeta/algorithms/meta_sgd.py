"""Meta-SGD: per-parameter inner learning rates, meta-learned beside the init.

The meta-parameters are ``MetaParams(init, rule)``, the rule params being the
learning rates alpha, a pytree like the model's params. Task i adapts by

  phi_0 = theta,  phi_{j+1} = phi_j - alpha ⊙ grad L_i^support(phi_j),

and the meta-gradient is the gradient of the query loss L_i^query(phi_i) with
respect to both theta and alpha, exact second order by default (Li, Zhou, Chen &
Li, 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax

from jmeta.estimators import through_inner_loop
from jmeta.gradient_learner import (
  GradientOptions,
  MetaParams,
  gradient_learner,
  support_adapter,
  with_gradient_options,
)
from jmeta.inner_loop import LossFn
from jmeta.inner_rules import learned_rates
from jmeta.learner import MetaLearner
from jmeta.models.base import Model, Params

if TYPE_CHECKING:
  from typing_extensions import Unpack
from jmeta.validation import check_positive_real


def meta_sgd_params(params: Params, learning_rate: float) -> MetaParams:
  """Initial meta-parameters: ``params`` with every learning rate at ``learning_rate``.

  Each learning-rate leaf has its parameter's shape and dtype; the same as
  ``meta_sgd(..., inner_learning_rate=learning_rate).init(params)``.
  """
  check_positive_real(learning_rate, 'learning_rate')
  return MetaParams(params, learned_rates(learning_rate).init(params))


@with_gradient_options
def meta_sgd(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_learning_rate: float | None = None,
  inner_steps: int = 1,
  first_order: bool = False,
  **options: Unpack[GradientOptions],
) -> MetaLearner:
  """Meta-SGD: grad = mean_i d L_i^query(phi_i) / d(theta, alpha).

  phi_i is ``inner_steps`` updates phi <- phi - alpha ⊙ grad L_i^support(phi) from
  theta (Li et al., 2017 use one); ``init`` starts every rate at
  ``inner_learning_rate`` (required for ``init``, not for meta-params built with
  ``meta_sgd_params``). ``first_order`` treats the inner gradients as constants
  (alpha still gets its gradient through the update). ``options`` are
  ``GradientOptions``.

  Example::

    learner = jmeta.meta_sgd(model, jmeta.losses.cross_entropy,
                             inner_learning_rate=0.4)
    trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-3))
    state = trainer.init(learner.init(params))
  """
  return gradient_learner(
    model,
    loss_fn,
    rule=learned_rates(inner_learning_rate),
    estimator=through_inner_loop(first_order),
    inner_steps=inner_steps,
    name='meta_sgd',
    **options,
  )


def meta_sgd_adapt(
  model: Model,
  loss_fn: LossFn,
  meta_params: MetaParams,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
) -> Params:
  """Adapts ``meta_params.init`` to one support set with the learned step sizes.

  ``steps`` updates phi <- phi - alpha ⊙ grad L(phi), L(phi) =
  loss_fn(model.apply(phi, inputs), targets); differentiable in ``meta_params``.
  """
  if not isinstance(meta_params, MetaParams):
    raise ValueError(
      f'Meta-SGD takes MetaParams(init, rule), got {type(meta_params).__name__}; '
      'build them with jmeta.meta_sgd_params(params, learning_rate).'
    )
  rule = learned_rates(None)  # the rates are in meta_params
  adapt = support_adapter(model, loss_fn, rule, steps=steps)
  return adapt(meta_params, inputs, targets)


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'meta_sgd': meta_sgd}
