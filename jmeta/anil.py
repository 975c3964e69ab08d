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

from collections.abc import Callable
from typing import Any

import jax
import optax

from jmeta import inner_loop
from jmeta.estimators import (
  MetaGradient,
  MetaGradientEstimator,
  MetricsFn,
  _estimator,
  _loss,
  _query_metrics,
)
from jmeta.inner_loop import LossFn, _check_support, check_steps, scan_inner_loop
from jmeta.models.base import Model, Params
from jmeta.tasks.batch import Task

HeadSelector = Callable[[tuple], bool] | str


def _key_name(entry: Any) -> Any:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return getattr(entry, attr)
  return entry


def _check_selector(head: Any) -> Callable[[tuple], bool]:
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
  select = _check_selector(head)
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


def _split(params: Params, head: HeadSelector):
  """The head's leaves, and merge(new head leaves) -> params with the body unchanged."""
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


def _adapt_head(
  loss: Callable[[Params], jax.Array],
  params: Params,
  head: HeadSelector,
  steps: int,
  opt: optax.GradientTransformation,
  first_order: bool,
  remat: bool,
):
  head_leaves, merge = _split(params, head)
  # The inner loop sees the head's leaves as a list; the body is a constant of its
  # objective, so its gradient flows only through the adapted head.
  adapted, losses, _ = scan_inner_loop(
    lambda h: loss(merge(h)),
    head_leaves,
    steps=steps,
    optimizer=opt,
    first_order=first_order,
    remat=remat,
  )
  pre = losses[0] if steps else loss(params)
  return merge(adapted), pre


def anil(
  model: Model,
  loss_fn: LossFn,
  *,
  head: HeadSelector = 'head',
  inner_steps: int,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  first_order: bool = False,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
) -> MetaGradientEstimator:
  """ANIL: MAML whose inner loop adapts only the leaves ``head`` selects.

  grad = mean_i d L_i^query(theta_body, h_i) / d theta, h_i the head after
  ``inner_steps`` updates of ``inner_optimizer`` (default SGD at
  ``inner_learning_rate``) on task i's support set with the body fixed (Raghu et
  al., 2020). ``head`` is a top-level key of the params (``'head'`` for
  ``jmeta.conv4``) or a predicate on a leaf's key path (see ``head_mask``); the
  inner optimizer sees the head's leaves as a list. ``first_order=True`` drops the
  second-order terms; ``remat=True`` recomputes each inner step in the backward pass.
  """
  _check_selector(head)
  steps = check_steps(inner_steps, 'inner_steps')
  opt = inner_loop.inner_optimizer(inner_optimizer, inner_learning_rate)

  def objective(params: Params, task: Task):
    support = _loss(model, loss_fn, task.support_inputs, task.support_targets)
    adapted, pre = _adapt_head(support, params, head, steps, opt, first_order, remat)
    return _query_metrics(model, loss_fn, metrics_fn, adapted, task, pre)

  def task_gradient(params: Params, task: Task) -> MetaGradient:
    grads, metrics = jax.grad(objective, has_aux=True)(params, task)
    return MetaGradient(grads, metrics)

  return _estimator('anil', model, task_gradient, batching, chunk_size)


def anil_adapt(
  model: Model,
  loss_fn: LossFn,
  params: Params,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
  head: HeadSelector = 'head',
  learning_rate: float | jax.Array | None = None,
  optimizer: optax.GradientTransformation | None = None,
) -> Params:
  """Adapts only the head of ``params`` to one support set; the evaluation side of ANIL.

  Like ``jmeta.adapt``, with every leaf outside the head left unchanged.
  """
  _check_selector(head)
  steps = check_steps(steps)
  _check_support(model, params, inputs, targets)
  opt = inner_loop.inner_optimizer(optimizer, learning_rate)
  loss = _loss(model, loss_fn, inputs, targets)
  adapted, _ = _adapt_head(loss, params, head, steps, opt, False, False)
  return adapted
