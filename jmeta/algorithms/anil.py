"""ANIL: only the head adapts in the inner loop; the body is meta-learned through it.

With params theta = (theta_body, theta_head), task i adapts the head alone,

  h_0 = theta_head,  h_{j+1} = h_j + optimizer(grad_h L_i^support(theta_body, h_j)),

and the meta-gradient is the gradient of L_i^query(theta_body, h_k) with respect
to all of theta: the body gets its gradient directly and through the adapted head
(second order unless ``first_order``). This is MAML with the body's inner learning
rate set to zero, computed without the body's inner gradients (Raghu, Raghu,
Bengio & Vinyals, 2020, "Rapid Learning or Feature Reuse? Towards Understanding
the Effectiveness of MAML").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax

from jmeta.estimators import through_inner_loop
from jmeta.gradient_learner import (
  OptimizerLearnerOptions,
  optimizer_learner,
  support_adapter,
  with_optimizer_learner_options,
)
from jmeta.inner_loop import InnerOptimizerOptions, LossFn, adapt
from jmeta.inner_rules import HeadSelector, head_only, inner_rule
from jmeta.learner import MetaLearner
from jmeta.models.base import Model, Params
from jmeta.options import lists_options

if TYPE_CHECKING:
  from typing_extensions import Unpack


@with_optimizer_learner_options
def anil(
  model: Model,
  loss_fn: LossFn,
  *,
  head: HeadSelector = 'head',
  first_order: bool = False,
  **options: Unpack[OptimizerLearnerOptions],
) -> MetaLearner:
  """ANIL: MAML whose inner loop adapts only the leaves ``head`` selects.

  grad = mean_i d L_i^query(theta_body, h_i) / d theta, h_i the head after
  ``inner_steps`` updates of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``) on task i's support set with the body fixed (Raghu et
  al., 2020). ``head`` is a top-level key of the params (``'head'`` for
  ``jmeta.conv4``) or a predicate on a leaf's key path (see ``head_mask``).
  ``first_order=True`` drops the second-order terms; ``options`` are
  ``OptimizerLearnerOptions``.
  """
  return optimizer_learner(
    model,
    loss_fn,
    head=head,
    estimator=through_inner_loop(first_order),
    name='anil',
    **options,
  )


@lists_options(InnerOptimizerOptions, adapt)
def anil_adapt(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  head: HeadSelector = 'head',
  steps: int,
  **options: Unpack[InnerOptimizerOptions],
) -> Params:
  """Adapts only the head of ``params`` to one support set; the evaluation side of ANIL.

  Like ``jmeta.adapt`` (``options`` are its ``InnerOptimizerOptions``), with every
  leaf outside the head left unchanged.
  """
  rule = head_only(
    inner_rule(options.get('optimizer'), options.get('learning_rate')), head
  )
  return support_adapter(model, loss_fn, rule, steps=steps)(params, inputs, targets)


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'anil': anil}
