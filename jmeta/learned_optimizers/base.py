"""The learned-rule interface: an optax-shaped update rule with its own meta-params.

A ``LearnedRule`` is a NamedTuple of pure functions:

* ``meta_init(key) -> meta_params``: the rule's own parameters, what meta-training
  learns (e.g. an LSTM's weights);
* ``init(meta_params, params) -> state``: the rule's per-problem state (e.g. the
  LSTM's hidden state for every coordinate of ``params``);
* ``update(meta_params, grads, state, params) -> (updates, state)``: the step,
  applied as ``params + updates`` (``optax.apply_updates``).

``as_optimizer(rule, meta_params)`` closes over the meta-params and returns an
ordinary ``optax.GradientTransformation``, differentiable in them, so a learned rule
drives any inner loop (``jmeta.adapt``, ``unroll``) and ``as_inner_rule`` makes it a
``jmeta.inner_rules.InnerRule`` whose meta-params MAML trains with the model's init.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from jmeta.inner_rules import InnerRule

MetaParams = Any


class LearnedRule(NamedTuple):
  """A learned update rule; see the module docstring."""

  name: str
  meta_init: Callable[[jax.Array], MetaParams]
  init: Callable[[MetaParams, Any], Any]
  update: Callable[[MetaParams, Any, Any, Any], tuple[Any, Any]]


def check_mirrors(
  reference: Any,
  tree: Any,
  trailing: tuple[int, ...],
  structure_message: Callable[[Any, Any], str],
  shape_message: Callable[[str, tuple, tuple], str],
) -> None:
  """Raises ``ValueError`` where ``tree`` stops mirroring ``reference``.

  ``tree`` must have ``reference``'s structure and each leaf the shape of its
  reference leaf (an array or a shape struct) followed by ``trailing``. The message
  is ``structure_message(want, got)`` or ``shape_message(path, got, expected)``.
  """
  want, got = jax.tree.structure(reference), jax.tree.structure(tree)
  if want != got:
    raise ValueError(structure_message(want, got))
  for (path, r), t in zip(
    jax.tree_util.tree_flatten_with_path(reference)[0],
    jax.tree.leaves(tree),
    strict=True,
  ):
    expected = tuple(np.shape(r)) + tuple(trailing)
    if tuple(np.shape(t)) != expected:
      raise ValueError(
        shape_message(jax.tree_util.keystr(path), tuple(np.shape(t)), expected)
      )


def check_meta_params(rule: LearnedRule, meta_params: MetaParams) -> None:
  """Refuses meta-params whose structure or shapes differ from ``rule.meta_init``'s.

  Runs on shapes only (``jax.eval_shape``), at trace time.
  """
  check_mirrors(
    jax.eval_shape(rule.meta_init, jax.random.key(0)),
    meta_params,
    (),
    lambda want, got: (
      f'the meta-params do not fit the {rule.name} rule: expected the structure '
      f'{want}, got {got}. Build them with its meta_init(key) (or a constructor '
      'of its module).'
    ),
    lambda path, got, want: (
      f'the meta-param {path} of the {rule.name} rule has shape {got}, expected {want}.'
    ),
  )


def check_state_matches(
  state_tree: Any, params: Any, trailing: tuple[int, ...], what: str
) -> None:
  """Refuses a per-parameter state tree that does not mirror ``params``.

  ``state_tree`` must have the structure of ``params`` and each leaf the shape of
  its parameter followed by ``trailing``. ``what`` names the state in the message.
  """
  if not jax.tree.leaves(params):
    raise ValueError('the params have no leaves: there is nothing to update.')
  check_mirrors(
    params,
    state_tree,
    trailing,
    lambda want, got: (
      f'the {what} does not match the params: it has the structure {got}, the '
      f'params {want}. Initialise the rule state with init(meta_params, params) '
      'on the params it will update.'
    ),
    lambda path, got, want: (
      f'the {what} of parameter {path} has shape {got}, expected {want} (the '
      f"parameter's shape {want[: len(want) - len(trailing)]} then "
      f'{tuple(trailing)}); was the rule state initialised on other params?'
    ),
  )


def as_optimizer(
  rule: LearnedRule, meta_params: MetaParams
) -> optax.GradientTransformation:
  """``rule`` with ``meta_params`` fixed, as an ``optax.GradientTransformation``.

  Differentiable with respect to ``meta_params``. ``update`` needs ``params``.

  Example::

    rule = jmeta.learned_optimizers.lstm_rule()
    opt = jmeta.learned_optimizers.as_optimizer(rule, rule.meta_init(key))
    phi = jmeta.adapt(model, loss_fn, params, x, y, steps=5, optimizer=opt)
  """
  if not isinstance(rule, LearnedRule):
    raise ValueError(
      f'expected a LearnedRule (e.g. lstm_rule()), got {type(rule).__name__}.'
    )
  check_meta_params(rule, meta_params)

  def init(params):
    return rule.init(meta_params, params)

  def update(grads, state, params=None):
    if params is None:
      raise ValueError(
        f'the learned {rule.name} rule needs the params in update(grads, state, '
        'params).'
      )
    return rule.update(meta_params, grads, state, params)

  return optax.GradientTransformation(init, update)


def as_inner_rule(rule: LearnedRule, meta_params: MetaParams) -> InnerRule:
  """``rule`` as a meta-learned ``jmeta.inner_rules.InnerRule``.

  Its rule params start at ``meta_params``; a gradient learner (e.g.
  ``jmeta.gradient_learner(..., rule=as_inner_rule(...))``) then meta-trains them
  with the model's initialisation, a learned optimizer inside MAML.
  """
  check_meta_params(rule, meta_params)
  return InnerRule(
    lambda _: meta_params, lambda mp: as_optimizer(rule, mp), shared=True
  )
