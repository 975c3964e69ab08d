"""Inner update rules: how a task's inner loop moves the params.

An ``InnerRule`` is an optax ``GradientTransformation`` together with anything it
meta-learns, and two modifiers of the inner problem:

* ``init(model_params) -> rule params`` (``init`` is None where the rule learns
  nothing) and
  ``optimizer(rule_params) -> optax.GradientTransformation``: the update of step j
  is phi_{j+1} = phi_j + optimizer(grad L(phi_j)), differentiable in the rule
  params when they are meta-learned;
* ``adapts``: None (every leaf adapts) or a selector of the leaves that adapt,
  the others staying fixed in the inner loop (ANIL's head);
* ``regularization``: None, or lambda of iMAML's proximal objective
  L(phi) + (lambda / 2) ||phi - theta||^2;
* ``pull_back``: None (with ``regularization``, every step is on the proximal
  objective), or the rate of one step on the proximal term alone after plain steps
  on L (``pulled_back``: iMAML's reference inner loop);
* ``shared``: False where the rule params hold one leaf per model parameter (Meta-SGD's
  rates), True where they are one pytree shared by every coordinate (a learned
  optimizer's weights), which the gradient learner then neither checks against the
  params' structure nor splits with ``head_only``.

An optimizer that is an ``optax.GradientTransformationExtraArgs`` also receives the
support loss of the step as ``value=`` (the meta-LSTM reads it).

Rules combine freely with the gradient estimators of ``jmeta.estimators`` in
``jmeta.gradient_learner``: e.g. ``head_only(sgd(0.1))`` with ``first_order()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.models.base import Params
from jmeta.validation import check_positive_real

HeadSelector = Callable[[tuple], bool] | str


class InnerRule(NamedTuple):
  """An inner update rule; see the module docstring."""

  init: Callable[[Params], Any] | None
  optimizer: Callable[[Any], optax.GradientTransformation]
  adapts: HeadSelector | None = None
  regularization: float | None = None
  shared: bool = False
  pull_back: float | None = None


def sgd(learning_rate: float | jax.Array) -> InnerRule:
  """Plain SGD: phi <- phi - alpha grad L(phi), alpha = ``learning_rate`` > 0.

  A Python or NumPy rate must be positive and finite (a negative one would ascend
  the support loss); a JAX array (e.g. a rate being differentiated) is not checked.
  """
  lr = learning_rate
  if not isinstance(lr, jax.Array):
    lr = check_positive_real(learning_rate, 'the inner learning rate')
  return InnerRule(None, lambda _: optax.sgd(lr))


def from_optimizer(optimizer: optax.GradientTransformation) -> InnerRule:
  """Any optax transformation as a fixed (not meta-learned) inner rule.

  Second derivatives pass through it: with Adam, set ``eps_root > 0`` so that they
  stay finite where a gradient is exactly zero (a bias feeding batch norm, a dead
  ReLU). ``jmeta.gradient_learner`` refuses a rule whose optimizer fails that
  probe (``second_derivative_is_finite``) under a second-order estimator; first-
  order estimators do not differentiate through it, so they take any optimizer.
  """
  if not isinstance(optimizer, optax.GradientTransformation):
    raise ValueError(
      f'the inner optimizer must be an optax.GradientTransformation, '
      f'got {type(optimizer).__name__}.'
    )
  return InnerRule(None, lambda _: optimizer)


def second_derivative_is_finite(optimizer: optax.GradientTransformation) -> bool:
  """Whether the derivative of ``optimizer``'s updates is finite at a zero gradient.

  Probes two updates on a tiny pytree with zero gradients and differentiates them
  with respect to the gradients, as a second-order meta-gradient does. Adam with
  ``eps_root=0`` fails: d sqrt(g^2) / dg is 0/0 at g = 0. Takes milliseconds, at
  build time. An optimizer the probe cannot run (one that needs the model's own
  pytree, e.g. ``optax.multi_transform`` with fixed labels) counts as finite.
  """
  params = {'w': jnp.zeros((2,), jnp.float32)}

  def total_update(grads):
    state = optimizer.init(params)
    first, state = optimizer.update(grads, state, params)
    second, _ = optimizer.update(grads, state, optax.apply_updates(params, first))
    return sum(jnp.sum(u) for u in jax.tree.leaves((first, second)))

  try:
    with jax.ensure_compile_time_eval():
      derivative = jax.grad(total_update)(jax.tree.map(jnp.zeros_like, params))
      return bool(jnp.all(jnp.isfinite(derivative['w'])))
  except Exception:  # noqa: BLE001 -- an optimizer the probe cannot run
    return True


def check_second_derivative(optimizer: optax.GradientTransformation) -> None:
  """Refuses an inner optimizer whose second derivative is NaN at a zero gradient."""
  if not second_derivative_is_finite(optimizer):
    raise ValueError(
      'the inner optimizer has a NaN derivative where a gradient is exactly zero '
      '(optax Adam or another sqrt-of-squares rule with eps_root=0), so a '
      'second-order meta-gradient through it would be NaN whenever a parameter '
      'gets a zero gradient (a bias feeding batch norm, a dead ReLU). Pass '
      'eps_root > 0, e.g. optax.adam(learning_rate, eps_root=1e-8), or use a '
      'first-order estimator (fomaml, first_order()).'
    )


def inner_rule(
  optimizer: optax.GradientTransformation | None = None,
  learning_rate: float | None = None,
) -> InnerRule:
  """``from_optimizer(optimizer)`` if given, else ``sgd(learning_rate)``."""
  if optimizer is not None and learning_rate is not None:
    raise ValueError(
      'give either an inner optimizer or an inner learning rate, not '
      'both (the learning rate belongs inside the optimizer).'
    )
  if optimizer is None:
    if learning_rate is None:
      raise ValueError(
        'the inner loop needs a learning_rate (plain SGD) or an optax '
        'optimizer, e.g. learning_rate=0.01 or '
        'optimizer=optax.sgd(0.01, momentum=0.9).'
      )
    return sgd(learning_rate)
  return from_optimizer(optimizer)


def scale_by_learning_rates(learning_rates: Params) -> optax.GradientTransformation:
  """The stateless update u = -alpha ⊙ g, alpha a pytree shaped like the params.

  Differentiable with respect to ``learning_rates`` (which it closes over).
  """

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda a, g: -a * g, learning_rates, updates), state

  return optax.GradientTransformation(init, update)


def learned_rates(learning_rate: float | None) -> InnerRule:
  """Meta-SGD's rule: per-parameter rates alpha, meta-learned, phi <- phi - alpha ⊙ g.

  Every rate starts at ``learning_rate`` (Li et al., 2017, draw them at random; a
  constant makes the first meta-step equal MAML's). The rule params are a pytree
  like the model params, each leaf with its parameter's shape and dtype. With
  ``learning_rate=None`` the rule's ``init`` refuses to run: the rates must then
  come from elsewhere (e.g. a checkpoint).
  """
  lr = (
    None
    if learning_rate is None
    else check_positive_real(learning_rate, 'learning_rate')
  )

  def init(params: Params) -> Params:
    if lr is None:
      raise ValueError(
        'the learned inner rates need an initial value: pass inner_learning_rate '
        '(e.g. meta_sgd(..., inner_learning_rate=0.01)).'
      )
    if not jax.tree.leaves(params):
      raise ValueError('params has no leaves: there is nothing to adapt.')
    return jax.tree.map(lambda p: jnp.full_like(p, lr), params)

  return InnerRule(init, scale_by_learning_rates)


def _key_name(entry: Any) -> Any:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return getattr(entry, attr)
  return entry


def check_selector(head: Any) -> Callable[[tuple], bool]:
  """A predicate on key paths from a top-level key name or a predicate."""
  if isinstance(head, str):
    return lambda path: len(path) > 0 and _key_name(path[0]) == head
  if callable(head):
    return head
  raise ValueError(
    f'head must be a top-level key name (e.g. "head") or a predicate on a key '
    f'path, got {head!r} of type {type(head).__name__}.'
  )


def head_mask(params: Params, head: HeadSelector = 'head') -> Params:
  """A pytree of bools like ``params``: True on the leaves ``head`` selects.

  ``head`` is a top-level key name or a predicate on a leaf's key path (a tuple
  of ``jax.tree_util`` key entries, e.g. ``(DictKey('head'), DictKey('w'))``).
  Raises ``ValueError`` if it selects no leaf or every leaf. Handy as the labels of
  ``optax.multi_transform``.
  """
  select = check_selector(head)
  mask = jax.tree_util.tree_map_with_path(lambda path, _: bool(select(path)), params)
  chosen = jax.tree.leaves(mask)
  if not any(chosen):
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    top = [_key_name(path[0]) for path, _ in paths if path]
    raise ValueError(
      f'the head selector {head!r} selects no parameter, so nothing would adapt; '
      f'top-level keys are {sorted(set(map(str, top)))}.'
    )
  if all(chosen):
    raise ValueError(
      f'the head selector {head!r} selects every parameter, leaving no body to '
      'meta-learn through the head; that is MAML (jmeta.maml).'
    )
  return mask


def split_leaves(params: Params, head: HeadSelector):
  """The selected leaves (a list), and merge(new leaves) -> params, the rest as is."""
  flags = jax.tree.leaves(head_mask(params, head))
  leaves, treedef = jax.tree.flatten(params)
  head_leaves = [x for x, f in zip(leaves, flags) if f]
  body_leaves = [x for x, f in zip(leaves, flags) if not f]

  def merge(new_head):
    it_head, it_body = iter(new_head), iter(body_leaves)
    return jax.tree.unflatten(
      treedef, [next(it_head) if f else next(it_body) for f in flags]
    )

  return head_leaves, merge


def head_only(rule: InnerRule, head: HeadSelector = 'head') -> InnerRule:
  """``rule`` applied to the leaves ``head`` selects; the rest stays fixed (ANIL).

  ``head`` is a top-level key of the params (``'head'`` for ``jmeta.conv4``) or a
  predicate on a leaf's key path (see ``head_mask``). The inner loop then
  differentiates the loss with respect to the head's leaves alone (Raghu et al.,
  2020), and the rule's optimizer sees them as a list.
  """
  check_selector(head)
  return rule._replace(adapts=head)


def proximal(rule: InnerRule, regularization: float) -> InnerRule:
  """``rule`` on iMAML's proximal objective L(phi) + (lambda / 2) ||phi - theta||^2.

  theta is where the inner loop starts; lambda = ``regularization`` > 0
  (Rajeswaran et al., 2019). The implicit estimator needs it.
  """
  lam = check_positive_real(regularization, 'regularization')
  return rule._replace(regularization=lam)


def pulled_back(rule: InnerRule, regularization: float, rate: float) -> InnerRule:
  """``rule`` on the plain support loss, then one step back towards theta:

    phi <- phi - rate * lambda * (phi - theta),

  a step of SGD at ``rate`` on the proximal term (lambda / 2) ||phi - theta||^2
  alone, lambda = ``regularization``. This is the inner loop of iMAML's reference
  code (aravindr93/imaml_dev, "pull back for regularization"), which approximates
  the proximal optimum less closely than ``proximal``; the implicit estimator's
  ``inner_gradient_ratio`` metric says how closely.
  """
  lam = check_positive_real(regularization, 'regularization')
  rate = check_positive_real(rate, 'the pull-back rate')
  if rate * lam > 1:
    raise ValueError(
      f'a pull-back rate of {rate} with regularization {lam} moves phi past theta '
      f'(rate * lambda = {rate * lam:g} > 1); use a rate at most {1 / lam:g}.'
    )
  return rule._replace(regularization=lam, pull_back=rate)


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
