"""Implicit MAML: the meta-gradient of a proximal inner problem, by conjugate gradient.

iMAML (Rajeswaran, Finn, Kakade & Levine, 2019) adapts to task i by approximately
solving the proximal problem

  phi_i* = argmin_phi L_i^support(phi) + (lambda / 2) ||phi - theta||^2,

and differentiates phi_i*(theta) implicitly. At the optimum
grad L_i^support(phi*) + lambda (phi* - theta) = 0, so by the implicit function
theorem dphi*/dtheta = (I + H_i / lambda)^{-1}, H_i the Hessian of L_i^support at
phi*, and the meta-gradient of L_i^query(phi_i*(theta)) is

  g_i = (I + H_i / lambda)^{-1} grad L_i^query(phi_i*).

Only phi_i* enters, not the path to it: the inner loop is not differentiated, so
memory does not grow with ``inner_steps``, and g_i is exact only insofar as the
inner loop converges. The linear system is solved by ``cg_steps`` iterations of
conjugate gradient with Hessian-vector products, never forming H_i.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.scipy.sparse.linalg import cg

from jmeta import inner_loop
from jmeta.estimators import (
  MetaGradient,
  MetaGradientEstimator,
  MetricsFn,
  _estimator,
  _loss,
  _query_metrics,
)
from jmeta.inner_loop import LossFn, check_steps, scan_inner_loop
from jmeta.models.base import Model, Params
from jmeta.tasks.batch import Task


def _check_positive_real(value: Any, name: str, *, allow_zero: bool = False) -> float:
  real = isinstance(value, (int, float, np.integer, np.floating))
  if isinstance(value, (bool, np.bool_)) or not real or not math.isfinite(value):
    raise ValueError(
      f'{name} must be a finite Python or NumPy real number, got {value!r} of '
      f'type {type(value).__name__}.'
    )
  if value < 0 or (value == 0 and not allow_zero):
    bound = '>= 0' if allow_zero else '> 0'
    raise ValueError(f'{name} must be {bound}, got {value}.')
  return float(value)


def _check_positive_int(value: Any, name: str) -> int:
  if (
    isinstance(value, (bool, np.bool_))
    or not isinstance(value, (int, np.integer))
    or value < 1
  ):
    raise ValueError(
      f'{name} must be a positive Python or NumPy int, got {value!r} of type '
      f'{type(value).__name__}.'
    )
  return int(value)


def check_proximal_sgd(learning_rate: Any, lam: float, steps: int) -> None:
  """Refuses plain SGD rates at which the proximal term alone cannot converge.

  On (lambda / 2) ||phi - theta||^2 a step of SGD at rate eta maps phi - theta to
  (1 - eta lambda)(phi - theta), so the inner loop diverges once eta lambda >= 2
  (from the second step: the first starts at phi = theta).
  """
  if learning_rate is None or steps < 2:
    return
  try:
    eta = float(learning_rate)
  except TypeError:  # a traced rate: nothing to check before tracing
    return
  if eta * lam >= 2:
    raise ValueError(
      f'inner SGD at learning rate {eta} with regularization {lam} cannot solve '
      f"iMAML's proximal problem: each step multiplies phi - theta by "
      f'1 - rate * regularization = {1 - eta * lam:g}, so {steps} steps do not converge. '
      f'Use a learning rate below 2 / regularization = {2 / lam:g} (1 / '
      'regularization solves the proximal term in one step), or pass an optax '
      'optimizer.'
    )


def _squared_distance(a: Params, b: Params) -> jax.Array:
  return sum(
    jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum(jnp.square(x - y)), a, b))
  )


def imaml_adapt(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
  regularization: float,
  learning_rate: float | None = None,
  optimizer: optax.GradientTransformation | None = None,
) -> Params:
  """iMAML's test-time adaptation: ``steps`` updates on the proximal objective.

  phi* ~ argmin_phi L(phi) + (lambda / 2) ||phi - theta||^2 from phi = theta =
  ``params``, lambda = ``regularization``; the evaluation counterpart of ``imaml``.
  """
  steps = check_steps(steps, 'steps')
  lam = _check_positive_real(regularization, 'regularization')
  opt = inner_loop.inner_optimizer(optimizer, learning_rate)
  check_proximal_sgd(learning_rate, lam, steps)
  support = _loss(model, loss_fn, inputs, targets)

  def proximal(phi):
    return support(phi) + 0.5 * lam * _squared_distance(phi, params)

  adapted, _, _ = scan_inner_loop(proximal, params, steps=steps, optimizer=opt)
  return adapted


def imaml(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  regularization: float,
  cg_steps: int = 5,
  cg_tolerance: float = 0.0,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
) -> MetaGradientEstimator:
  """Implicit MAML (Rajeswaran et al., 2019).

  phi_i* ~ argmin_phi L_i^support(phi) + (lambda / 2) ||phi - theta||^2 by
  ``inner_steps`` updates of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``) from phi = theta, lambda = ``regularization``; then

    grad = mean_i (I + H_i / lambda)^{-1} grad L_i^query(phi_i*),

  H_i the support-loss Hessian at phi_i*, by at most ``cg_steps`` iterations of
  conjugate gradient (stopping early once the residual is below ``cg_tolerance``
  times the right-hand side's norm; 0 always runs ``cg_steps``). CG needs
  I + H_i / lambda positive definite, i.e. lambda > -lambda_min(H_i): lambda must
  dominate the support loss's negative curvature at phi_i*, otherwise the
  gradient is meaningless and may be NaN. lambda thus also damps the system, so
  no separate damping term is needed.
  ``metrics['loss']`` is the query loss at phi_i*. The inner loop should be run
  to convergence: the formula is exact only at the proximal optimum.

  Example::

    est = jmeta.imaml(model, jmeta.losses.mean_squared_error, inner_steps=10,
                      inner_learning_rate=0.01, regularization=1.0, cg_steps=5)
  """
  steps = check_steps(inner_steps, 'inner_steps')
  lam = _check_positive_real(regularization, 'regularization')
  max_cg = _check_positive_int(cg_steps, 'cg_steps')
  tol = _check_positive_real(cg_tolerance, 'cg_tolerance', allow_zero=True)
  opt = inner_loop.inner_optimizer(inner_optimizer, inner_learning_rate)
  check_proximal_sgd(inner_learning_rate, lam, steps)

  def task_gradient(params: Params, task: Task) -> MetaGradient:
    # theta is a constant of the inner problem: nothing is differentiated through
    # the inner loop, which is what keeps iMAML's memory independent of steps.
    theta = lax.stop_gradient(params)
    support = _loss(model, loss_fn, task.support_inputs, task.support_targets)

    def proximal(phi):
      return support(phi) + 0.5 * lam * _squared_distance(phi, theta)

    adapted, values, _ = scan_inner_loop(proximal, theta, steps=steps, optimizer=opt)
    # The first step starts at phi = theta, where the proximal term is zero.
    pre = values[0] if steps else support(theta)
    query_grad, metrics = jax.grad(
      lambda p: _query_metrics(model, loss_fn, metrics_fn, p, task, pre),
      has_aux=True,
    )(adapted)

    # Forward-over-reverse Hessian-vector products; linearizing once keeps the
    # primal gradient computation out of every CG iteration.
    _, hvp = jax.linearize(jax.grad(support), adapted)

    def matvec(v):
      return jax.tree.map(lambda x, hv: x + hv / lam, v, hvp(v))

    grads, _ = cg(matvec, query_grad, tol=tol, maxiter=max_cg)
    return MetaGradient(grads, lax.stop_gradient(metrics))

  return _estimator('imaml', model, task_gradient, batching, chunk_size)
