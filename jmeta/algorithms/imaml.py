"""Implicit MAML (Rajeswaran, Finn, Kakade & Levine, 2019).

Task i adapts by approximately solving the proximal problem

  phi_i* = argmin_phi L_i^support(phi) + (lambda / 2) ||phi - theta||^2,

and phi_i*(theta) is differentiated implicitly. At the optimum
grad L_i^support(phi*) + lambda (phi* - theta) = 0, so by the implicit function
theorem dphi*/dtheta = (I + H_i / lambda)^{-1}, H_i the Hessian of L_i^support at
phi*, and the meta-gradient of L_i^query(phi_i*(theta)) is

  g_i = (I + H_i / lambda)^{-1} grad L_i^query(phi_i*).

Only phi_i* enters, not the path to it: the inner loop is not differentiated, so
memory does not grow with ``inner_steps``, and g_i is exact only insofar as the
inner loop converges. The linear system is solved by conjugate gradient with
Hessian-vector products, never forming H_i.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import optax

from jmeta.estimators import implicit
from jmeta.gradient_learner import (
  GradientOptions,
  gradient_learner,
  support_adapter,
  with_gradient_options,
)
from jmeta.inner_loop import InnerOptimizerOptions, LossFn, adapt
from jmeta.inner_rules import check_proximal_sgd, inner_rule, proximal, pulled_back
from jmeta.learner import MetaLearner
from jmeta.models.base import Model, Params
from jmeta.options import lists_options
from jmeta.validation import check_positive_real, check_steps

if TYPE_CHECKING:
  from typing_extensions import Unpack


def _proximal_rule(optimizer, learning_rate, regularization, steps, pull_back_rate):
  rule = inner_rule(optimizer, learning_rate)
  if pull_back_rate is not None:
    return pulled_back(rule, regularization, pull_back_rate)
  rule = proximal(rule, regularization)
  check_proximal_sgd(learning_rate, rule.regularization, steps)
  return rule


@with_gradient_options
def imaml(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  regularization: float,
  pull_back_rate: float | None = None,
  cg_steps: int = 5,
  cg_tolerance: float = 0.0,
  cg_damping: float = 0.0,
  hessian_damping: float = 0.0,
  **options: Unpack[GradientOptions],
) -> MetaLearner:
  """Implicit MAML.

  phi_i* ~ argmin_phi L_i^support(phi) + (lambda / 2) ||phi - theta||^2 by
  ``inner_steps`` updates of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``) from phi = theta, lambda = ``regularization``; then

    grad = mean_i (I + H_i / lambda)^{-1} grad L_i^query(phi_i*),

  H_i the support-loss Hessian at phi_i*, by at most ``cg_steps`` iterations of
  conjugate gradient (stopping early once the residual is below ``cg_tolerance``
  times the right-hand side's norm; 0 always runs ``cg_steps``). CG needs
  I + H_i / lambda positive definite, i.e. lambda > -lambda_min(H_i): lambda must
  dominate the support loss's negative curvature at phi_i*, otherwise the
  gradient is meaningless and may be NaN. lambda thus also damps the system.
  ``metrics['loss']`` is the query loss at phi_i*. The inner loop should be run
  to convergence: the formula is exact only at the proximal optimum. At test,
  ``predict`` runs the same proximal inner loop for ``test_steps``. Training logs
  ``inner_gradient_ratio`` (the proximal objective's gradient norm at phi_i* over
  its value at theta) and ``cg_relative_residual``, so that both can be checked.

  The reference code's variant (aravindr93/imaml_dev): ``pull_back_rate=r`` takes
  the inner steps on the plain support loss and then one step
  phi <- phi - r lambda (phi - theta) (``jmeta.inner_rules.pulled_back``), and
  ``cg_damping``, ``hessian_damping`` damp the system (``jmeta.estimators.implicit``;
  the reference uses r = 0.1, 1 and 10).

  Example::

    learner = jmeta.imaml(model, jmeta.losses.mean_squared_error, inner_steps=10,
                          inner_learning_rate=0.01, regularization=1.0, cg_steps=5)
  """
  steps = check_steps(inner_steps, 'inner_steps')
  rule = _proximal_rule(
    inner_optimizer, inner_learning_rate, regularization, steps, pull_back_rate
  )
  if options.get('test_steps') is not None and pull_back_rate is None:
    check_proximal_sgd(inner_learning_rate, rule.regularization, options['test_steps'])
  return gradient_learner(
    model,
    loss_fn,
    rule=rule,
    estimator=implicit(
      cg_steps,
      cg_tolerance,
      cg_damping=cg_damping,
      hessian_damping=hessian_damping,
    ),
    inner_steps=steps,
    name='imaml',
    **options,
  )


@lists_options(InnerOptimizerOptions, adapt)
def imaml_adapt(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  regularization: float,
  steps: int,
  pull_back_rate: float | None = None,
  **options: Unpack[InnerOptimizerOptions],
) -> Params:
  """iMAML's test-time adaptation: ``steps`` updates on the proximal objective.

  phi* ~ argmin_phi L(phi) + (lambda / 2) ||phi - theta||^2 from phi = theta =
  ``params``, lambda = ``regularization``, by ``jmeta.adapt``'s inner optimizer
  (``options``), or with ``pull_back_rate`` the reference code's plain steps and
  pull-back (``jmeta.inner_rules.pulled_back``); the evaluation side of ``imaml``.
  """
  steps = check_steps(steps, 'steps')
  check_positive_real(regularization, 'regularization')
  optimizer, learning_rate = options.get('optimizer'), options.get('learning_rate')
  rule = _proximal_rule(optimizer, learning_rate, regularization, steps, pull_back_rate)
  return support_adapter(model, loss_fn, rule, steps=steps)(params, inputs, targets)


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'imaml': imaml}
