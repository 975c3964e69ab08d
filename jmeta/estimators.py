"""Gradient estimators: how the meta-gradient passes through a task's inner loop.

With phi_i = U_i^k(theta) the params after k inner steps of a rule on task i's
support set and L_i the query loss:

* ``second_order()``: exact, mean_i (dphi_i/dtheta)^T grad L_i(phi_i), by
  differentiating through every inner step (Finn et al., 2017);
* ``first_order()``: mean_i grad L_i(phi_i), dphi_i/dtheta taken as I (Finn et al.,
  2017, Sec. 5.2);
* ``reptile()``: mean_i (theta - phi_i), fed to the outer optimizer as a gradient
  (Nichol et al., 2018);
* ``implicit(cg_steps)``: mean_i (I + H_i / lambda)^{-1} grad L_i(phi_i*) at the
  optimum of the proximal inner problem (Rajeswaran et al., 2019), by conjugate
  gradient; needs an inner rule with ``jmeta.inner_rules.proximal``.

An estimator is a choice, combined with an inner rule in ``jmeta.gradient_learner``.
"""

from __future__ import annotations

from typing import NamedTuple

from jmeta.validation import check_positive_int, check_positive_real

SECOND_ORDER = 'second_order'
FIRST_ORDER = 'first_order'
REPTILE = 'reptile'
IMPLICIT = 'implicit'
KINDS = (SECOND_ORDER, FIRST_ORDER, REPTILE, IMPLICIT)


class Estimator(NamedTuple):
  """A gradient estimator: its ``kind`` (one of ``KINDS``) and its settings."""

  kind: str
  cg_steps: int = 0
  cg_tolerance: float = 0.0
  cg_damping: float = 0.0
  hessian_damping: float = 0.0


def second_order() -> Estimator:
  """Exact second-order meta-gradient through the inner loop (MAML)."""
  return Estimator(SECOND_ORDER)


def first_order() -> Estimator:
  """First-order meta-gradient: the inner gradients are constants (FOMAML)."""
  return Estimator(FIRST_ORDER)


def through_inner_loop(first_order: bool = False) -> Estimator:
  """The meta-gradient through the inner loop: ``second_order()``, or with
  ``first_order`` ``first_order()`` (the ``first_order`` flag of MAML, ANIL and
  Meta-SGD)."""
  return Estimator(FIRST_ORDER if first_order else SECOND_ORDER)


def reptile() -> Estimator:
  """Reptile's direction theta - phi, averaged over tasks."""
  return Estimator(REPTILE)


def implicit(
  cg_steps: int = 5,
  cg_tolerance: float = 0.0,
  *,
  cg_damping: float = 0.0,
  hessian_damping: float = 0.0,
) -> Estimator:
  """iMAML's implicit gradient, at most ``cg_steps`` conjugate-gradient iterations.

  CG solves ((1 + d) I + H / (lambda + e)) g = grad L^query, d = ``cg_damping``
  and e = ``hessian_damping``; the defaults (0, 0) give the implicit function
  theorem's (I + H / lambda)^{-1}. The reference code (aravindr93/imaml_dev) damps
  with d = 1, e = 10. CG stops early once the residual is below ``cg_tolerance``
  times the right-hand side's norm (0: always ``cg_steps``).
  """
  return Estimator(
    IMPLICIT,
    check_positive_int(cg_steps, 'cg_steps'),
    check_positive_real(cg_tolerance, 'cg_tolerance', allow_zero=True),
    check_positive_real(cg_damping, 'cg_damping', allow_zero=True),
    check_positive_real(hessian_damping, 'hessian_damping', allow_zero=True),
  )


def check_estimator(estimator: Estimator) -> Estimator:
  if not isinstance(estimator, Estimator) or estimator.kind not in KINDS:
    raise ValueError(
      f'estimator must be one of jmeta.estimators.second_order(), first_order(), '
      f'reptile() or implicit(...); got {estimator!r}.'
    )
  return estimator
