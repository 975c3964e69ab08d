"""Meta-gradient estimators for unrolled learned optimizers, behind one interface.

An ``UnrollEstimator`` is a NamedTuple of pure functions, in the shape of
learned_optimization's gradient estimators:

* ``init(meta_params, key) -> state``: what the estimator carries between calls
  (the part-way inner problems of a truncated estimator; nothing for a full one);
* ``estimate(meta_params, state, key) -> (MetaGradient, state)``: one estimate of
  the gradient of the meta-loss, and the state for the next call.

The meta-loss of an unroll of N steps is the mean over the steps t = 1..N of
f(theta_t) (Andrychowicz et al., 2016, with w_t = 1), averaged over ``num_tasks``
problems run at once under ``jax.vmap``. Estimators:

* ``full_backprop``: the exact gradient through all N steps (one ``lax.scan``);
* ``truncated_backprop``: truncated BPTT, the gradient of the loss of the next T
  steps, the inner state carried from one truncation to the next (and a fresh
  problem drawn when an unroll ends); biased, since it ignores the effect of the
  meta-params on the state it starts from;
* ``antithetic_es``: evolution strategies over the whole unroll with antithetic
  pairs, (L(phi + eps) - L(phi - eps)) eps / (2 sigma^2), eps ~ N(0, sigma^2 I):
  unbiased for the gradient of the Gaussian-smoothed meta-loss;
* ``pes``: persistent evolution strategies (Vicol et al., 2021) over truncations of
  T steps: each particle accumulates the perturbations of the unroll so far, and the
  estimate (L+ - L-) (sum of eps so far) / (2 sigma^2) is unbiased for the smoothed
  meta-loss's gradient across truncations (the logic of learned_optimization's
  ``truncated_pes.py``).

Every estimate returns ``jmeta.MetaGradient(grads, metrics)`` with
``metrics['loss']`` the meta-loss of the steps it unrolled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.learned_optimizers.base import LearnedRule, MetaParams, as_optimizer
from jmeta.learned_optimizers.tasks import TaskFamily
from jmeta.learned_optimizers.unroll import InnerState, init_inner_states, unroll
from jmeta.learner import MetaGradient
from jmeta.validation import check_positive_int, check_positive_real, check_steps


class UnrollEstimator(NamedTuple):
  """A meta-gradient estimator; see the module docstring."""

  name: str
  init: Callable[[MetaParams, jax.Array], Any]
  estimate: Callable[[MetaParams, Any, jax.Array], tuple[MetaGradient, Any]]


class PESState(NamedTuple):
  """PES's carried state: the positive and negative particles' inner problems and
  each particle's sum of perturbations since its unroll began."""

  positive: InnerState
  negative: InnerState
  accumulator: Any


def check_unroll(steps: Any, truncation: Any = None) -> tuple[int, int]:
  """``(steps, truncation)`` as ints, or a ValueError naming the fix.

  ``steps`` >= 1; ``truncation`` (default ``steps``) in [1, steps] and dividing
  ``steps``, so that no truncation straddles two unrolls.
  """
  steps = check_steps(steps, 'the unroll length (steps)')
  if steps == 0:
    raise ValueError('the unroll length (steps) must be at least 1 inner step.')
  if truncation is None:
    return steps, steps
  truncation = check_positive_int(truncation, 'the truncation length')
  if truncation > steps:
    raise ValueError(
      f'the truncation length {truncation} is longer than the unroll of {steps} '
      f'steps; use a truncation of at most {steps} (equal to it is full backprop).'
    )
  if steps % truncation:
    raise ValueError(
      f'the truncation length {truncation} does not divide the unroll of {steps} '
      'steps, so a truncation would straddle two problems; pick a divisor.'
    )
  return steps, truncation


def _tasks_key(key):
  return jax.random.fold_in(key, 0)


def _noise_key(key):
  return jax.random.fold_in(key, 1)


def _unroll_loss(rule, family, meta_params, state, steps, first_order):
  """The mean loss of ``steps`` updates of one problem, and its new state."""
  opt = as_optimizer(rule, meta_params)
  state, losses = unroll(opt, family, state, steps, first_order=first_order)
  return jnp.mean(losses), (state, losses)


def _batch_loss(rule, family, meta_params, states, steps, first_order):
  """Mean over a batch of problems of ``_unroll_loss``; aux: new states, losses."""
  loss, aux = jax.vmap(
    lambda s: _unroll_loss(rule, family, meta_params, s, steps, first_order)
  )(states)
  return jnp.mean(loss), aux


def _restart_finished(rule, family, meta_params, states, key, steps, num_tasks):
  """``states`` with every problem that has run ``steps`` steps replaced by a
  fresh one drawn from ``key``."""
  fresh = init_inner_states(as_optimizer(rule, meta_params), family, key, num_tasks)
  done = states.step >= steps
  return _select(done, fresh, states)


def _select(mask, on_true, on_false):
  def pick(a, b):
    return jnp.where(jnp.reshape(mask, mask.shape + (1,) * (a.ndim - 1)), a, b)

  return jax.tree.map(pick, on_true, on_false)


def _metrics(loss, losses):
  return {'loss': loss, 'last_loss': jnp.mean(losses[:, -1])}


def full_backprop(
  rule: LearnedRule,
  family: TaskFamily,
  *,
  steps: int,
  num_tasks: int,
  first_order: bool = False,
) -> UnrollEstimator:
  """The exact meta-gradient through whole unrolls of ``steps`` steps on
  ``num_tasks`` fresh problems per call. ``first_order`` treats the optimizee's
  gradients as constants (Andrychowicz et al.'s simplification)."""
  steps, _ = check_unroll(steps)
  num_tasks = check_positive_int(num_tasks, 'num_tasks')

  def init(meta_params, key):
    del meta_params, key
    return optax.EmptyState()

  def estimate(meta_params, state, key):
    def loss(mp):
      states = init_inner_states(
        as_optimizer(rule, mp), family, _tasks_key(key), num_tasks
      )
      return _batch_loss(rule, family, mp, states, steps, first_order)

    (value, (_, losses)), grads = jax.value_and_grad(loss, has_aux=True)(meta_params)
    return MetaGradient(grads, _metrics(value, losses)), state

  return UnrollEstimator('full_backprop', init, estimate)


def truncated_backprop(
  rule: LearnedRule,
  family: TaskFamily,
  *,
  steps: int,
  truncation: int,
  num_tasks: int,
  first_order: bool = False,
) -> UnrollEstimator:
  """Truncated BPTT: each call unrolls the next ``truncation`` steps of
  ``num_tasks`` problems from the carried state and differentiates their loss;
  problems that have run ``steps`` steps are replaced by fresh ones first. With
  ``truncation == steps`` it is ``full_backprop`` (on the problems of ``init``)."""
  steps, truncation = check_unroll(steps, truncation)
  num_tasks = check_positive_int(num_tasks, 'num_tasks')

  def init(meta_params, key):
    opt = as_optimizer(rule, meta_params)
    return init_inner_states(opt, family, _tasks_key(key), num_tasks)

  def estimate(meta_params, states, key):
    states = _restart_finished(
      rule, family, meta_params, states, _tasks_key(key), steps, num_tasks
    )

    def loss(mp):
      return _batch_loss(rule, family, mp, states, truncation, first_order)

    (value, (states, losses)), grads = jax.value_and_grad(loss, has_aux=True)(
      meta_params
    )
    return MetaGradient(grads, _metrics(value, losses)), jax.lax.stop_gradient(states)

  return UnrollEstimator('truncated_backprop', init, estimate)


def sample_perturbations(meta_params: MetaParams, key: jax.Array, n: int, std: float):
  """``n`` draws of eps ~ N(0, std^2 I) shaped like ``meta_params`` (a leading axis)."""
  leaves, treedef = jax.tree.flatten(meta_params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
    treedef,
    [
      std * jax.random.normal(k, (n,) + jnp.shape(x), jnp.result_type(x))
      for k, x in zip(keys, leaves, strict=True)
    ],
  )


def _antithetic_losses(rule, family, meta_params, eps, pos, neg, steps):
  """Per particle: the mean losses at meta_params + eps and - eps, new states."""

  def one(e, p, n):
    plus = jax.tree.map(jnp.add, meta_params, e)
    minus = jax.tree.map(jnp.subtract, meta_params, e)
    lp, (p, losses_p) = _unroll_loss(rule, family, plus, p, steps, False)
    ln, (n, losses_n) = _unroll_loss(rule, family, minus, n, steps, False)
    return lp, ln, p, n, (losses_p + losses_n) / 2

  return jax.vmap(one)(eps, pos, neg)


def _weighted_mean(coefficients, trees):
  return jax.tree.map(
    lambda e: jnp.mean(
      jnp.reshape(coefficients, coefficients.shape + (1,) * (e.ndim - 1)) * e, axis=0
    ),
    trees,
  )


def antithetic_es(
  rule: LearnedRule,
  family: TaskFamily,
  *,
  steps: int,
  num_tasks: int,
  std: float = 0.01,
) -> UnrollEstimator:
  """Antithetic evolution strategies over whole unrolls: one perturbation pair per
  problem, ``num_tasks`` fresh problems per call, noise of standard deviation
  ``std``. Needs no derivative of the unroll."""
  steps, _ = check_unroll(steps)
  num_tasks = check_positive_int(num_tasks, 'num_tasks')
  std = check_positive_real(std, 'std')

  def init(meta_params, key):
    del meta_params, key
    return optax.EmptyState()

  def estimate(meta_params, state, key):
    opt = as_optimizer(rule, meta_params)
    inner = init_inner_states(opt, family, _tasks_key(key), num_tasks)
    eps = sample_perturbations(meta_params, _noise_key(key), num_tasks, std)
    lp, ln, _, _, losses = _antithetic_losses(
      rule, family, meta_params, eps, inner, inner, steps
    )
    grads = _weighted_mean((lp - ln) / (2 * std**2), eps)
    return MetaGradient(grads, _metrics(jnp.mean((lp + ln) / 2), losses)), state

  return UnrollEstimator('antithetic_es', init, estimate)


def pes(
  rule: LearnedRule,
  family: TaskFamily,
  *,
  steps: int,
  truncation: int,
  num_tasks: int,
  std: float = 0.01,
) -> UnrollEstimator:
  """Persistent evolution strategies (Vicol et al., 2021) with antithetic pairs:
  ``num_tasks`` particles, each a pair of problems unrolled ``truncation`` steps
  per call at meta_params +- eps; a particle's accumulator holds the sum of its
  eps since its unroll began and weights its estimate. Finished unrolls restart
  on fresh problems with a zero accumulator."""
  steps, truncation = check_unroll(steps, truncation)
  num_tasks = check_positive_int(num_tasks, 'num_tasks')
  std = check_positive_real(std, 'std')

  def init(meta_params, key):
    opt = as_optimizer(rule, meta_params)
    inner = init_inner_states(opt, family, _tasks_key(key), num_tasks)
    zeros = jax.tree.map(lambda x: jnp.zeros((num_tasks,) + jnp.shape(x)), meta_params)
    return PESState(inner, inner, zeros)

  def estimate(meta_params, state, key):
    done = state.positive.step >= steps
    fresh = init_inner_states(
      as_optimizer(rule, meta_params), family, _tasks_key(key), num_tasks
    )
    pos = _select(done, fresh, state.positive)
    neg = _select(done, fresh, state.negative)
    accumulator = _select(
      done, jax.tree.map(jnp.zeros_like, state.accumulator), state.accumulator
    )
    eps = sample_perturbations(meta_params, _noise_key(key), num_tasks, std)
    lp, ln, pos, neg, losses = _antithetic_losses(
      rule, family, meta_params, eps, pos, neg, truncation
    )
    accumulator = jax.tree.map(jnp.add, accumulator, eps)
    grads = _weighted_mean((lp - ln) / (2 * std**2), accumulator)
    metrics = _metrics(jnp.mean((lp + ln) / 2), losses)
    return MetaGradient(grads, metrics), PESState(pos, neg, accumulator)

  return UnrollEstimator('pes', init, estimate)


class MetaTrainState(NamedTuple):
  """The meta-training state: step count, meta-params, meta-optimizer and
  estimator states. Everything a resumed run needs."""

  step: jax.Array
  meta_params: MetaParams
  opt_state: Any
  estimator_state: Any


def init_meta_train_state(
  estimator: UnrollEstimator,
  optimizer: optax.GradientTransformation,
  meta_params: MetaParams,
  key: jax.Array,
) -> MetaTrainState:
  return MetaTrainState(
    jnp.zeros((), jnp.int32),
    meta_params,
    optimizer.init(meta_params),
    estimator.init(meta_params, key),
  )


def meta_train_step(
  estimator: UnrollEstimator, optimizer: optax.GradientTransformation
) -> Callable[[MetaTrainState, jax.Array], tuple[MetaTrainState, dict]]:
  """``step(state, key) -> (state, metrics)``: one estimate, one optimizer update
  of the meta-params. Pure; ``jax.jit`` it. Adds ``grad_norm`` to the metrics."""

  def step(state: MetaTrainState, key: jax.Array):
    out, est_state = estimator.estimate(state.meta_params, state.estimator_state, key)
    updates, opt_state = optimizer.update(out.grads, state.opt_state, state.meta_params)
    meta_params = optax.apply_updates(state.meta_params, updates)
    metrics = {**out.metrics, 'grad_norm': optax.tree.norm(out.grads)}
    return MetaTrainState(state.step + 1, meta_params, opt_state, est_state), metrics

  return step
