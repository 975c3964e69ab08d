"""MAML++: MAML with the stabilising options of Antoniou, Edwards & Storkey (2019).

"How to train your MAML" (ICLR 2019). Task i adapts by K inner steps

  phi_0 = theta,  phi_{j+1} = phi_j - alpha_j ⊙ grad L_i^support(phi_j; beta_j),

and the meta-objective is sum_j w_j(t) L_i^query(phi_j; beta_j) over j = 1..K at
training iteration t. Each option is off by default; with all of them off this is
``jmeta.maml`` with plain SGD, computed by the same code:

* Multi-step loss (MSL): w(t) = ``msl_weights(t, K, N)``, uniform 1/K at t = 0,
  the first K - 1 weights decaying linearly (floor 0.03/K) while the last takes up
  the rest; from t = N on, w = (0, ..., 0, 1), the plain MAML objective. Without
  MSL w = (0, ..., 0, 1) always.
* Derivative-order annealing: first order (dphi/dtheta = I, as ``jmeta.fomaml``)
  while t < N', exact second order from then on.
* Learned per-layer, per-step inner rates (LSLR): alpha_j[leaf] is one scalar per
  parameter tensor and inner step, meta-learned with theta.
* Per-step batch-norm weights (BNWB): the selected leaves (typically batch norm's
  scale and bias) have K + 1 meta-learned copies beta_0..beta_K, phi_j being
  evaluated with beta_j (see ``maml_plus_plus_params``); the inner loop does not
  update them.
* Per-step batch-norm statistics (BNRS): jmeta keeps no running statistics; batch
  norm normalises with the statistics of the batch at hand (``'transductive'``),
  so every step already uses its own statistics.
* Cosine annealing of the meta learning rate is the outer optimizer's business:
  ``optax.adam(optax.cosine_decay_schedule(1e-3, num_steps, alpha=...))``.

The schedules need the training iteration: the learner's ``meta_gradient(params,
batch, step)`` takes it (``make_meta_trainer`` passes its step); with ``step=None``
it is the objective after annealing (t = infinity: final-step loss, second order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jmeta.gradient_learner import model_classes, query_metrics
from jmeta.inner_loop import LossFn, check_support, scan_inner_loop
from jmeta.learner import (
  MetaGradient,
  MetaLearner,
  MetricsFn,
  adapt_then_apply,
  over_tasks,
)
from jmeta.models.base import Model, Params, check_model_accepts
from jmeta.tasks.batch import Task, TaskBatch
from jmeta.validation import check_bool, check_positive_real, check_steps

LeafSelector = Callable[[tuple], bool]

# Antoniou et al.'s floor on the non-final multi-step-loss weights, times K.
MSL_FLOOR = 0.03


class MAMLPlusPlusParams(NamedTuple):
  """MAML++'s meta-parameters.

  Attributes:
    init: theta, the model's params, with ``None`` in place of every leaf that has
      per-step copies in ``step_weights``.
    learning_rates: None (one fixed rate, the factory's), or a pytree like ``init``
      whose leaves have shape ``(K,)``: rate of that tensor at each inner step.
    step_weights: None, or a pytree like the model's params holding, for each
      per-step leaf, its K + 1 copies stacked on a leading axis, and ``None``
      elsewhere.
  """

  init: Params
  learning_rates: Params | None
  step_weights: Params | None


def _is_none(x: Any) -> bool:
  return x is None


def _check_inner_steps(inner_steps: Any) -> int:
  steps = check_steps(inner_steps, 'inner_steps')
  if steps < 1:
    raise ValueError(
      'inner_steps must be >= 1 for MAML++: its rates, weights and losses are per '
      f'inner step; got {steps}.'
    )
  return steps


def _check_rate(rate: Any) -> float:
  return check_positive_real(rate, 'inner_learning_rate')


def batch_norm_weights(path: tuple) -> bool:
  """Batch norm's scale and bias leaves (``jmeta.conv4``'s): MAML++'s BNWB default."""
  return getattr(path[-1], 'key', None) in ('scale', 'bias')


def _check_selector(select: Any) -> LeafSelector | None:
  if select is True:
    return batch_norm_weights
  if select is False:
    return None
  if select is not None and not callable(select):
    raise ValueError(
      "per_step_bn_weights must be None, True (batch norm's scale and bias) or a "
      "predicate on a leaf key path, e.g. lambda path: path[-1].key in ('scale', "
      f"'bias'); got {select!r} of type {type(select).__name__}."
    )
  return select


def _selection(params: Params, select: LeafSelector) -> Params:
  """A pytree of bools like ``params``: the leaves that get per-step copies."""
  mask = jax.tree_util.tree_map_with_path(lambda path, _: bool(select(path)), params)
  chosen = jax.tree.leaves(mask)
  if not any(chosen):
    raise ValueError(
      'per_step_bn_weights selects no parameter; for jmeta.conv4 use '
      "lambda path: path[-1].key in ('scale', 'bias')."
    )
  if all(chosen):
    raise ValueError(
      'per_step_bn_weights selects every parameter, leaving nothing for the inner '
      'loop to adapt.'
    )
  return mask


def maml_plus_plus_params(
  model_params: Params,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  learn_inner_rates: bool = False,
  per_step_bn_weights: LeafSelector | None = None,
) -> MAMLPlusPlusParams:
  """Initial MAML++ meta-parameters from the model's params.

  With ``learn_inner_rates`` every rate starts at ``inner_learning_rate`` (one per
  tensor and inner step, in the tensor's dtype). Each leaf whose key path
  ``per_step_bn_weights`` accepts (``jax.tree_util`` key entries, e.g.
  ``(DictKey('block_0'), DictKey('scale'))``; True selects batch norm's scale and
  bias) is moved from ``init`` (where it
  becomes ``None``, so no copy of it sits there unused) to ``step_weights`` as K + 1
  equal copies: copy j is used wherever phi_j is evaluated, by the support loss of
  inner step j (j < K) and by the query loss after step j (j >= 1). Antoniou et
  al.'s code keeps K copies and evaluates the query loss after step j with copy
  j - 1; K + 1 copies give phi_K a copy of its own.
  """
  steps = _check_inner_steps(inner_steps)
  check_bool(learn_inner_rates, 'learn_inner_rates')
  select = _check_selector(per_step_bn_weights)
  if learn_inner_rates or inner_learning_rate is not None:
    rate = _check_rate(inner_learning_rate)
  if not jax.tree.leaves(model_params):
    raise ValueError('model_params has no leaves: there is nothing to adapt.')
  init, step_weights = model_params, None
  if select is not None:
    mask = _selection(model_params, select)
    init = jax.tree.map(lambda m, p: None if m else p, mask, model_params)
    step_weights = jax.tree.map(
      lambda m, p: jnp.stack([jnp.asarray(p)] * (steps + 1)) if m else None,
      mask,
      model_params,
    )
  learning_rates = None
  if learn_inner_rates:
    learning_rates = jax.tree.map(
      lambda p: jnp.full((steps,), rate, jnp.result_type(p)), init
    )
  return MAMLPlusPlusParams(init, learning_rates, step_weights)


def _check_params(params: Any) -> int | None:
  """Checks ``params`` on its own; returns its number of steps K (None if fixed)."""
  if not isinstance(params, MAMLPlusPlusParams):
    raise ValueError(
      'MAML++ takes MAMLPlusPlusParams(init, learning_rates, step_weights), got '
      f'{type(params).__name__}; build it with jmeta.maml_plus_plus_params.'
    )
  init, rates, copies = params
  counts = set()
  if rates is not None:
    if jax.tree.structure(rates) != jax.tree.structure(init):
      raise ValueError(
        'MAMLPlusPlusParams.learning_rates must have the structure of init: got '
        f'{jax.tree.structure(rates)} and {jax.tree.structure(init)}.'
      )
    for lr in jax.tree.leaves(rates):
      if jnp.ndim(lr) != 1:
        raise ValueError(
          'every learning-rate leaf has shape (inner_steps,), one rate per inner '
          f'step; got shape {jnp.shape(lr)}.'
        )
      counts.add(jnp.shape(lr)[0])
  if copies is not None:
    full = jax.tree.structure(copies, is_leaf=_is_none)
    if full != jax.tree.structure(init, is_leaf=_is_none):
      raise ValueError(
        'MAMLPlusPlusParams.step_weights must have the structure of the model '
        f'params, like init: got {full} and '
        f'{jax.tree.structure(init, is_leaf=_is_none)}.'
      )
    pairs = zip(
      jax.tree.leaves(copies, is_leaf=_is_none), jax.tree.leaves(init, is_leaf=_is_none)
    )
    for copy, leaf in pairs:
      if (copy is None) == (leaf is None):
        raise ValueError(
          'each leaf lives in exactly one of init and step_weights (the other '
          'holds None there); build the params with jmeta.maml_plus_plus_params.'
        )
      if copy is not None:
        if jnp.ndim(copy) < 1:
          raise ValueError('every step_weights leaf stacks its copies on axis 0.')
        counts.add(jnp.shape(copy)[0] - 1)
  if len(counts) > 1:
    raise ValueError(
      'learning_rates (K per leaf) and step_weights (K + 1 copies per leaf) '
      f'disagree on the number of inner steps K: {sorted(counts)}.'
    )
  return counts.pop() if counts else None


def _model_params(phi: Params, step_weights: Params | None, j) -> Params:
  """The model's params at phi with copy j of the per-step leaves (the last beyond)."""
  if step_weights is None:
    return phi
  return jax.tree.map(
    lambda s, p: p if s is None else s[jnp.minimum(j, s.shape[0] - 1)],
    step_weights,
    phi,
    is_leaf=_is_none,
  )


def msl_weights(iteration: Any, inner_steps: int, anneal_iterations: int) -> jax.Array:
  """The multi-step loss weights w(t) over inner steps 1..K, shape ``(K,)``.

  For t < N = ``anneal_iterations`` (Antoniou et al., 2019, Sec. 4, and their
  ``get_per_step_loss_importance_vector``), with d = 1 / (K N):

    w_j = max(1/K - t d, 0.03/K)                  for j < K,
    w_K = min(1/K + t (K - 1) d, 1 - (K - 1) 0.03/K),

  uniform at t = 0 and summing to one. From t = N on, w = (0, ..., 0, 1): their
  code stops using the multi-step loss after its annealing epochs. ``iteration``
  may be traced; ``inner_steps`` and ``anneal_iterations`` are static ints.
  """
  steps = _check_inner_steps(inner_steps)
  anneal = check_steps(anneal_iterations, 'anneal_iterations')
  if jnp.ndim(iteration) != 0:
    raise ValueError(f'iteration must be a scalar, got shape {jnp.shape(iteration)}.')
  dtype = jnp.result_type(float)
  final_only = jnp.zeros((steps,), dtype).at[-1].set(1)
  if anneal == 0:
    return final_only
  t = jnp.asarray(iteration).astype(dtype)
  decay, floor = 1.0 / steps / anneal, MSL_FLOOR / steps
  early = jnp.maximum(1.0 / steps - t * decay, floor)
  last = jnp.minimum(1.0 / steps + t * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
  annealing = jnp.concatenate([jnp.full((steps - 1,), early, dtype), last[None]])
  return jnp.where(t < anneal, annealing, final_only)


def _inner_loop(
  support: Callable[[Params, Any], jax.Array],
  query: Callable[[Params, Any], jax.Array] | None,
  params: MAMLPlusPlusParams,
  *,
  steps: int,
  rate: float | None,
  first_order: bool,
  remat: bool,
) -> tuple[Params, jax.Array, jax.Array | None]:
  """``steps`` updates phi <- phi - alpha_j ⊙ grad support(phi, j) from ``init``.

  Returns phi_steps, the support loss before each step and, if ``query`` is given,
  ``query(phi_{j+1}, j + 1)`` after each step. Beyond the K learned rates the last
  one is reused.
  """

  def step(phi, j):
    value, grads = jax.value_and_grad(support)(phi, j)
    if first_order:
      grads = lax.stop_gradient(grads)
    if params.learning_rates is None:
      phi = jax.tree.map(lambda p, g: p - rate * g, phi, grads)
    else:
      phi = jax.tree.map(
        lambda p, a, g: p - a[jnp.minimum(j, a.shape[0] - 1)] * g,
        phi,
        params.learning_rates,
        grads,
      )
    after = query(phi, j + 1) if query is not None else None
    return phi, (value, after)

  if remat:
    # As in scan_inner_loop: store only each step's input, recompute the rest.
    step = jax.checkpoint(step, prevent_cse=False)
  phi, (values, after) = lax.scan(step, params.init, jnp.arange(steps))
  return phi, values, after


def maml_plus_plus(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float | None = None,
  multi_step_loss: bool | None = None,
  msl_anneal_iterations: int = 0,
  derivative_order_annealing_iterations: int = 0,
  learn_inner_rates: bool = False,
  per_step_bn_weights: LeafSelector | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
  test_steps: int | None = None,
) -> MetaLearner:
  """MAML++ (Antoniou et al., 2019): MAML with MSL, annealing, LSLR and BNWB.

  grad = mean_i d/d(theta, alpha, beta) sum_j w_j(t) L_i^query(phi_ij; beta_j), with
  w(t) = ``msl_weights(t, inner_steps, msl_anneal_iterations)`` under
  ``multi_step_loss`` (which needs ``msl_anneal_iterations > 0``; None, the
  default, turns it on exactly when ``msl_anneal_iterations > 0``) and the final
  step alone otherwise; first order while t is below
  ``derivative_order_annealing_iterations``. ``learn_inner_rates`` reads per-tensor, per-step rates from the
  params (``inner_learning_rate`` then only seeds them, in
  ``maml_plus_plus_params``); otherwise every step uses ``inner_learning_rate``.
  ``per_step_bn_weights`` must select the leaves the params were built with.

  ``meta_gradient(params, batch, step)`` follows the schedules with a
  ``lax.switch`` on the unbatched step over the (at most three) phases, so one
  phase runs per step; with ``step=None`` it is the annealed objective. ``init``
  builds the params from the model's (``maml_plus_plus_params`` with these
  options); ``predict`` adapts for ``test_steps`` (default ``inner_steps``). ``metrics['loss']`` is the final query loss; with ``multi_step_loss``
  ``metrics['objective']`` is the weighted sum that was differentiated. Use
  ``optax.cosine_decay_schedule`` in the outer optimizer for the paper's cosine
  annealing of the meta learning rate.

  Example::

    learner = jmeta.maml_plus_plus(
      model, jmeta.losses.cross_entropy, inner_steps=5, inner_learning_rate=0.1,
      multi_step_loss=True, msl_anneal_iterations=10_000,
      derivative_order_annealing_iterations=50_000, learn_inner_rates=True,
      per_step_bn_weights=True)  # batch norm's scale and bias
    trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-3))
    state = trainer.init(learner.init(model_params))
  """
  steps = _check_inner_steps(inner_steps)
  if multi_step_loss is None:
    multi_step_loss = msl_anneal_iterations != 0
  check_bool(multi_step_loss, 'multi_step_loss')
  check_bool(learn_inner_rates, 'learn_inner_rates')
  msl_n = check_steps(msl_anneal_iterations, 'msl_anneal_iterations')
  order_n = check_steps(
    derivative_order_annealing_iterations, 'derivative_order_annealing_iterations'
  )
  if multi_step_loss and msl_n == 0:
    raise ValueError(
      'multi_step_loss=True needs msl_anneal_iterations > 0: the multi-step loss is '
      'used while it anneals and the final-step loss afterwards.'
    )
  if msl_n and not multi_step_loss:
    raise ValueError(
      f'msl_anneal_iterations={msl_n} has no effect without multi_step_loss=True.'
    )
  rate = None
  if not learn_inner_rates or inner_learning_rate is not None:
    rate = _check_rate(inner_learning_rate)
  select = _check_selector(per_step_bn_weights)
  check_bool(remat, 'remat')
  test = steps if test_steps is None else check_steps(test_steps, 'test_steps')

  def check(params: MAMLPlusPlusParams) -> None:
    # Trace-time checks that the params are the ones this estimator was built for.
    k = _check_params(params)
    if learn_inner_rates != (params.learning_rates is not None):
      raise ValueError(
        f'the estimator has learn_inner_rates={learn_inner_rates} but the params '
        f'{"lack" if learn_inner_rates else "carry"} learning_rates; build both '
        'with the same learn_inner_rates.'
      )
    if (select is None) != (params.step_weights is None):
      raise ValueError(
        'per_step_bn_weights differs between the estimator and the params; build '
        'both with the same selector.'
      )
    if k is not None and k != steps:
      raise ValueError(
        f'the params carry per-step values for {k} inner steps, the estimator has '
        f'inner_steps={steps}.'
      )
    if select is not None:
      full = _model_params(params.init, params.step_weights, 0)
      chosen = jax.tree.leaves(_selection(full, select))
      present = [
        s is not None for s in jax.tree.leaves(params.step_weights, is_leaf=_is_none)
      ]
      if chosen != present:
        raise ValueError(
          'per_step_bn_weights selects other leaves than those with per-step '
          'copies in params.step_weights; build both with the same selector.'
        )

  def objective(params: MAMLPlusPlusParams, task: Task, first_order, weights):
    def support(phi, j):
      p = _model_params(phi, params.step_weights, j)
      return loss_fn(model.apply(p, task.support_inputs), task.support_targets)

    per_step = params.learning_rates is not None or params.step_weights is not None
    if weights is None and not per_step:
      # MAML's own computation, so with every option off MAML++ is MAML bit for bit.
      adapted, support_losses, _, _ = scan_inner_loop(
        lambda p: support(p, 0),
        params.init,
        steps=steps,
        optimizer=optax.sgd(rate),
        first_order=first_order,
        remat=remat,
      )
    else:

      def query(phi, j):
        p = _model_params(phi, params.step_weights, j)
        return loss_fn(model.apply(p, task.query_inputs), task.query_targets)

      adapted, support_losses, after = _inner_loop(
        support,
        query if weights is not None else None,
        params,
        steps=steps,
        rate=rate,
        first_order=first_order,
        remat=remat,
      )
    final = _model_params(adapted, params.step_weights, steps)
    loss, metrics = query_metrics(
      model, loss_fn, metrics_fn, final, task, support_losses[0]
    )
    if weights is not None:
      loss = jnp.sum(weights.astype(after.dtype) * after)
    if multi_step_loss:
      metrics['objective'] = loss
    return loss, metrics

  def gradient(params, task: Task, first_order: bool, weights) -> MetaGradient:
    grads, metrics = jax.grad(objective, has_aux=True)(
      params, task, first_order, weights
    )
    return MetaGradient(grads, metrics)

  def check_batch(params: MAMLPlusPlusParams, batch: TaskBatch) -> None:
    check(params)
    full = _model_params(params.init, params.step_weights, 0)
    check_model_accepts(model, full, batch.support_inputs[0], 'support inputs')

  batch_gradient = over_tasks(
    gradient, batching=batching, chunk_size=chunk_size, check=check_batch
  )

  # The schedules change at these iterations; between two of them (a phase) the
  # derivative order and whether the multi-step loss is on are fixed.
  boundaries = sorted({n for n in (order_n, msl_n) if n > 0})

  def phase(start: int):
    first_order, msl = start < order_n, start < msl_n

    def run(params, batch, iteration):
      weights = msl_weights(iteration, steps, msl_n) if msl else None
      return batch_gradient(params, batch, first_order, weights)

    return run

  phases = [phase(start) for start in [0, *boundaries]]

  def meta_gradient(
    params: MAMLPlusPlusParams, batch: TaskBatch, iteration: jax.Array | None = None
  ) -> MetaGradient:
    if iteration is None:
      return batch_gradient(params, batch, False, None)
    check_batch(params, batch)
    if jnp.ndim(iteration) != 0:
      raise ValueError(f'iteration must be a scalar, got shape {jnp.shape(iteration)}.')
    iteration = jnp.asarray(iteration)
    if len(phases) == 1:
      return phases[0](params, batch, iteration)
    index = sum((iteration >= n).astype(jnp.int32) for n in boundaries)
    # The iteration is unbatched, so only the current phase runs, also under vmap.
    return lax.switch(index, phases, params, batch, iteration)

  def task_gradient(params: MAMLPlusPlusParams, task: Task, iteration=None):
    if iteration is None:
      check(params)
      return gradient(params, task, False, None)
    one = jax.tree.map(lambda x: jnp.asarray(x)[None], TaskBatch(*task))
    return meta_gradient(params, one, iteration)

  def init(model_params: Params) -> MAMLPlusPlusParams:
    return maml_plus_plus_params(
      model_params,
      inner_steps=steps,
      inner_learning_rate=inner_learning_rate,
      learn_inner_rates=learn_inner_rates,
      per_step_bn_weights=select,
    )

  predict = adapt_then_apply(
    model,
    functools.partial(
      maml_plus_plus_adapt, model, loss_fn, steps=test, inner_learning_rate=rate
    ),
  )

  def class_labels(params: MAMLPlusPlusParams, batch: TaskBatch):
    full = _model_params(params.init, params.step_weights, 0)
    return model_classes(model, full, batch)

  return MetaLearner(
    'maml++',
    init,
    meta_gradient,
    predict,
    task_gradient,
    init_gradient,
    class_labels,
  )


def init_gradient(grads: MAMLPlusPlusParams) -> Params:
  """The gradient with respect to the model's params: per-step copies summed.

  Summing is the gradient of one tensor shared by every step, so it compares with
  other learners' gradients of the model's params.
  """
  if grads.step_weights is None:
    return grads.init
  return jax.tree.map(
    lambda s, p: p if s is None else jnp.sum(s, axis=0),
    grads.step_weights,
    grads.init,
    is_leaf=_is_none,
  )


def maml_plus_plus_adapt(
  model: Model,
  loss_fn: LossFn,
  params: MAMLPlusPlusParams,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
  inner_learning_rate: float | None = None,
) -> Params:
  """Adapts to one support set with the learned rates and per-step weights.

  ``steps`` updates phi <- phi - alpha_j ⊙ grad L(phi; beta_j) from ``params.init``
  (alpha_j = ``inner_learning_rate`` if the params have no learned rates), then
  returns the model's params: phi_steps with copy ``steps`` of the per-step leaves,
  ready for ``model.apply``. Beyond the K trained steps the last rate and copy are
  reused. Differentiable in ``params``; the evaluation counterpart of the estimator.
  """
  steps = check_steps(steps)
  _check_params(params)
  rate = None
  if params.learning_rates is None:
    rate = _check_rate(inner_learning_rate)
  check_support(
    model, _model_params(params.init, params.step_weights, 0), inputs, targets
  )

  def support(phi, j):
    p = _model_params(phi, params.step_weights, j)
    return loss_fn(model.apply(p, inputs), targets)

  adapted, _, _ = _inner_loop(
    support, None, params, steps=steps, rate=rate, first_order=False, remat=False
  )
  return _model_params(adapted, params.step_weights, steps)


# The names under which jmeta.make_learner finds these factories.
LEARNERS = {'maml_plus_plus': maml_plus_plus}
