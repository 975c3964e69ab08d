"""Gradient-based meta-learners from an inner rule and a gradient estimator.

``gradient_learner(model, loss_fn, rule=..., estimator=..., inner_steps=k)`` is the
``MetaLearner`` that adapts to task i by k updates of ``rule`` on its support set,

  phi_0 = theta,  phi_{j+1} = phi_j + rule(grad L_i^support(phi_j)),

and estimates the meta-gradient of L_i^query(phi_k) with ``estimator``. MAML is
``sgd`` with ``second_order``, first-order MAML ``first_order``, Reptile ``reptile``,
Meta-SGD ``learned_rates`` with ``second_order``, ANIL ``head_only(sgd)``, iMAML
``proximal(sgd)`` with ``implicit``; every other pairing works the same way, e.g.
first-order Meta-SGD or ANIL with Reptile. At test time ``predict`` adapts with the
same rule for ``test_steps`` and applies the model to the queries.

With ``persistent_inner_state=True`` the inner optimizer's state is not reset per
task: it passes from task to task, in batch order, and from one meta-update to the
next, and test-time adaptation starts from it, as Reptile's reference code keeps
its inner Adam state (Nichol et al., 2018; openai/supervised-reptile restores only
the model's variables between tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.scipy.sparse.linalg import cg

from jmeta import estimators as est
from jmeta.batching import mean_over_tasks_in_order
from jmeta.estimators import Estimator, check_estimator
from jmeta.inner_loop import (
  LossFn,
  check_batch_size,
  check_support,
  minibatch_objective,
  scan_inner_loop,
)
from jmeta.inner_rules import (
  HeadSelector,
  InnerRule,
  check_second_derivative,
  head_only,
  inner_rule,
  split_leaves,
)
from jmeta.learner import (
  NO_CARRY,
  Carry,
  ClassLabels,
  LearnerOptions,
  MetaGradient,
  MetaLearner,
  MetricsFn,
  adapt_then_apply,
  identity,
  output_classes,
  over_tasks,
)
from jmeta.models.base import Model, Params, check_model_accepts
from jmeta.options import lists_options
from jmeta.tasks.batch import Task, check_task_batch_shapes
from jmeta.validation import check_bool, check_steps

if TYPE_CHECKING:
  from typing_extensions import Required, Unpack


class MetaParams(NamedTuple):
  """The meta-parameters of a learner whose inner rule learns something.

  ``init`` is the model's initialisation theta, ``rule`` the rule's parameters (e.g.
  Meta-SGD's per-parameter rates, a pytree like ``init``).
  """

  init: Params
  rule: Any


class InnerStateParams(NamedTuple):
  """The meta-params of a learner built with ``persistent_inner_state=True``: the
  model's params ``params``, which the outer loop trains, and ``inner_state``, the
  inner optimizer's state, which the learner carries (``INNER_STATE_CARRY``)."""

  params: Params
  inner_state: Any


def _split_inner_state(meta_params: InnerStateParams) -> tuple[Params, Any]:
  return meta_params.params, meta_params.inner_state


INNER_STATE_CARRY = Carry(_split_inner_state, InnerStateParams)
"""The ``Carry`` of ``InnerStateParams``: params trained, inner state carried."""


class GradientOptions(LearnerOptions, total=False):
  """The keyword options every gradient-based factory hands to ``gradient_learner``.

  ``test_steps``, ``inner_batch_size``, ``test_batch_size``, ``remat``,
  ``persistent_inner_state`` and the ``LearnerOptions`` (``batching``, ``chunk_size``, ``metrics_fn``), with
  ``gradient_learner``'s defaults and meaning; a pairing that cannot use one (e.g.
  ``remat`` with Reptile) is refused there with a ``ValueError``.
  """

  test_steps: int | None
  inner_batch_size: int | None
  test_batch_size: int | None
  remat: bool
  persistent_inner_state: bool


def with_gradient_options(factory):
  """Lists ``GradientOptions`` in the signature of ``factory(..., **options)``,
  with ``gradient_learner``'s defaults (``jmeta.options.lists_options``)."""
  return lists_options(GradientOptions, gradient_learner)(factory)


class InnerLoopOptions(TypedDict, total=False):
  """The inner loop of a learner that adapts by an optimizer: ``inner_steps``
  updates of ``inner_optimizer``, by default SGD at ``inner_learning_rate``
  (``jmeta.inner_rules.inner_rule``)."""

  inner_steps: Required[int]
  inner_learning_rate: float | None
  inner_optimizer: optax.GradientTransformation | None


class OptimizerLearnerOptions(InnerLoopOptions, GradientOptions, total=False):
  """``InnerLoopOptions`` and ``GradientOptions``: what ``optimizer_learner`` and
  the factories built on it (MAML, first-order MAML, Reptile, ANIL) take."""


def with_optimizer_learner_options(factory):
  """Lists ``OptimizerLearnerOptions`` in the signature of ``factory(...,
  **options)``, with ``optimizer_learner``'s defaults."""
  return lists_options(OptimizerLearnerOptions, optimizer_learner)(factory)


def query_metrics(model, loss_fn, metrics_fn, params, task: Task, support_loss):
  """``(query loss, metrics)`` of ``params`` on ``task``'s query set."""
  outputs = model.apply(params, task.query_inputs)
  loss = loss_fn(outputs, task.query_targets)
  metrics = {'loss': loss, 'support_loss': support_loss}
  if metrics_fn is not None:
    metrics.update(metrics_fn(outputs, task.query_targets))
  return loss, metrics


def squared_distance(a: Params, b: Params) -> jax.Array:
  """||a - b||^2 over all leaves."""
  return sum(
    jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum(jnp.square(x - y)), a, b))
  )


def _check_pairing(rule: InnerRule, estimator: Estimator, learns: bool, batch, remat):
  kind = estimator.kind
  if kind in (est.REPTILE, est.IMPLICIT) and learns:
    raise ValueError(
      f"the {kind} estimator gives no gradient for the inner rule's own "
      'meta-parameters (e.g. learned rates); pair a learned rule with '
      'second_order() or first_order().'
    )
  if kind == est.IMPLICIT and rule.regularization is None:
    raise ValueError(
      'the implicit estimator solves for the optimum of the proximal inner '
      'problem: wrap the rule in jmeta.inner_rules.proximal(rule, regularization).'
    )
  if kind == est.IMPLICIT and (rule.adapts is not None or batch is not None):
    raise ValueError(
      'the implicit estimator adapts every parameter on the full support set; '
      'it takes no head_only rule and no inner_batch_size.'
    )
  if kind == est.SECOND_ORDER and rule.init is None:
    # A fixed optimizer (a learned rule's is built from its meta-params, later).
    check_second_derivative(rule.optimizer(None))
  if remat and kind not in (est.SECOND_ORDER, est.FIRST_ORDER):
    raise ValueError(
      f'remat=True recomputes inner steps on the backward pass through the inner '
      f'loop; the {kind} estimator does not differentiate through it.'
    )


def split_meta_params(rule: InnerRule, meta_params: Any) -> tuple[Params, Any]:
  """(the model's params, the rule's params or None) of a learner's meta-params."""
  if rule.init is None:
    return meta_params, None
  return meta_params.init, meta_params.rule


def adapt_with_rule(
  model: Model,
  loss_fn: LossFn,
  rule: InnerRule,
  meta_params: Any,
  inputs: jax.Array,
  targets: jax.Array,
  *,
  steps: int,
  batch_size: int | None = None,
  first_order: bool = False,
  remat: bool = False,
  inner_state: Any = None,
) -> tuple[Params, jax.Array, Any]:
  """Adapts to one support set by ``steps`` updates of ``rule``.

  Returns phi_steps, the support loss at theta and the rule's optimizer state after
  the last step. Differentiable in the meta-params; ``first_order`` treats the
  inner gradients as constants. With ``batch_size`` step j takes the loss on
  minibatch j of ``jmeta.inner_loop.minibatch_indices`` (keyed by
  ``data_key(inputs)``). The optimizer starts from ``inner_state``, by default a
  fresh one (``inner_state_init``), and is not differentiated through it.
  """
  params, rule_params = split_meta_params(rule, meta_params)
  objective, xs = minibatch_objective(
    model, loss_fn, inputs, targets, steps=steps, batch_size=batch_size
  )
  support = objective if batch_size is None else _full(model, loss_fn, inputs, targets)
  if rule.regularization is not None and rule.pull_back is None:
    objective = _proximal(objective, params, rule.regularization)
  start, inner, merge = params, objective, None
  if rule.adapts is not None:
    # The inner loop sees the head's leaves as a list; the body is a constant of
    # its objective, so its gradient flows only through the adapted head.
    start, merge = split_leaves(params, rule.adapts)

    def inner(head, *x):
      return objective(merge(head), *x)

    if rule_params is not None and not rule.shared:
      rule_params, _ = split_leaves(rule_params, rule.adapts)
  if inner_state is not None:
    inner_state = lax.stop_gradient(inner_state)
  adapted, values, _, end_state = scan_inner_loop(
    inner,
    start,
    steps=steps,
    optimizer=rule.optimizer(rule_params),
    first_order=first_order,
    remat=remat,
    xs=xs,
    opt_state=inner_state,
  )
  if merge is not None:
    adapted = merge(adapted)
  if rule.pull_back is not None:
    # One step of rate pull_back on the proximal term alone, after plain steps.
    shrink = rule.pull_back * rule.regularization
    adapted = jax.tree.map(lambda p, t: p - shrink * (p - t), adapted, params)
  full_batch = steps and batch_size is None
  pre = values[0] if full_batch else support(params)
  return adapted, pre, lax.stop_gradient(end_state)


def inner_state_init(rule: InnerRule, params: Params) -> Any:
  """A fresh state of a fixed ``rule``'s optimizer for ``params``: over the leaves
  the rule adapts (all, or a ``head_only`` rule's head)."""
  start = params if rule.adapts is None else split_leaves(params, rule.adapts)[0]
  return rule.optimizer(None).init(start)


def support_adapter(
  model: Model,
  loss_fn: LossFn,
  rule: InnerRule,
  *,
  steps: int,
  batch_size: int | None = None,
  persistent_inner_state: bool = False,
) -> Callable[[Any, jax.Array, jax.Array], Params]:
  """Test-time adaptation: ``adapt(meta_params, inputs, targets)``, phi_steps for
  one support set by ``steps`` updates of ``rule`` (``adapt_with_rule``). With
  ``persistent_inner_state`` the meta-params are ``InnerStateParams`` and the
  optimizer starts from their inner state.

  Differentiable in the meta-params; raises ``ValueError`` for a bad step count
  (here), and, when called, for meta-params that do not fit ``rule``, an empty or
  mismatched support set, or inputs the model does not accept.
  """
  steps = check_steps(steps, 'steps')

  def adapt(meta_params: Any, inputs: jax.Array, targets: jax.Array) -> Params:
    inner_state = None
    if persistent_inner_state:
      meta_params, inner_state = _check_inner_state_params(meta_params)
    params, _ = split_meta_params(
      rule, _check_meta_params(meta_params, rule.init is not None, rule.shared)
    )
    check_support(model, params, inputs, targets)
    adapted, _, _ = adapt_with_rule(
      model,
      loss_fn,
      rule,
      meta_params,
      inputs,
      targets,
      steps=steps,
      batch_size=batch_size,
      inner_state=inner_state,
    )
    return adapted

  return adapt


def gradient_learner(
  model: Model,
  loss_fn: LossFn,
  *,
  rule: InnerRule,
  estimator: Estimator,
  inner_steps: int,
  test_steps: int | None = None,
  inner_batch_size: int | None = None,
  test_batch_size: int | None = None,
  batching: str = 'auto',
  chunk_size: int | None = None,
  metrics_fn: MetricsFn | None = None,
  remat: bool = False,
  persistent_inner_state: bool = False,
  name: str = 'gradient_learner',
) -> MetaLearner:
  """A ``MetaLearner`` adapting by ``inner_steps`` of ``rule``, meta-trained by
  ``estimator``.

  The meta-params are the model's params when the rule learns nothing, otherwise
  ``MetaParams(init, rule)``. With ``inner_batch_size`` each inner step sees one
  minibatch of the support set, drawn without replacement (Reptile's inner loop;
  ``jmeta.inner_loop.minibatch_indices`` keyed by the support images);
  ``test_batch_size`` does the same at test, where ``test_steps`` (default
  ``inner_steps``) steps adapt. ``remat=True`` recomputes each inner step on the
  backward pass (second or first order only).

  ``persistent_inner_state=True`` keeps the inner optimizer's state instead of
  starting each task afresh (Reptile's reference code): the meta-params are
  ``InnerStateParams(params, inner_state)``, the tasks of a batch run in order, each
  starting from the state the one before left, the last one's state is carried to
  the next meta-update (``INNER_STATE_CARRY``), and ``predict`` starts from it
  without changing it. Each task's starting state is a constant of its
  meta-gradient: no derivative flows from one task's state into the next. A fixed
  rule only (no learned one), and batching 'auto' or 'map' (the tasks run in order
  either way).
  """
  if not isinstance(rule, InnerRule):
    raise ValueError(
      f'rule must be a jmeta.inner_rules.InnerRule (e.g. inner_rules.sgd(0.01)), '
      f'got {type(rule).__name__}.'
    )
  check_estimator(estimator)
  steps = check_steps(inner_steps, 'inner_steps')
  test = steps if test_steps is None else check_steps(test_steps, 'test_steps')
  for size in (inner_batch_size, test_batch_size):
    if size is not None:
      # Its type now; whether the support set can fill it, when shapes are known.
      check_batch_size(size, num_examples=size)
  check_bool(remat, 'remat')
  persistent = check_bool(persistent_inner_state, 'persistent_inner_state')
  learns = rule.init is not None
  _check_pairing(rule, estimator, learns, inner_batch_size, remat)
  if persistent:
    _check_persistent(learns, batching)
  kind = estimator.kind

  def split(meta_params):
    return split_meta_params(rule, meta_params)

  def adapt(meta_params, inputs, targets, **kwargs):
    return adapt_with_rule(model, loss_fn, rule, meta_params, inputs, targets, **kwargs)

  def init(params: Params) -> Any:
    if persistent:
      return InnerStateParams(params, inner_state_init(rule, params))
    return MetaParams(params, rule.init(params)) if learns else params

  def train_adapt(meta_params, task: Task, inner_state, first_order=False, remat=False):
    return adapt(
      meta_params,
      task.support_inputs,
      task.support_targets,
      steps=steps,
      batch_size=inner_batch_size,
      first_order=first_order,
      remat=remat,
      inner_state=inner_state,
    )

  # Each task function returns (its MetaGradient, the inner state after its inner
  # loop); a fresh inner state per task is inner_state=None.
  def through_adaptation(meta_params, task: Task, inner_state=None):
    def objective(meta_params):
      adapted, pre, end = train_adapt(
        meta_params,
        task,
        inner_state,
        first_order=kind == est.FIRST_ORDER,
        remat=remat,
      )
      loss, metrics = query_metrics(model, loss_fn, metrics_fn, adapted, task, pre)
      return loss, (metrics, end)

    grads, (metrics, end) = jax.grad(objective, has_aux=True)(meta_params)
    return MetaGradient(grads, metrics), end

  def reptile_direction(params, task: Task, inner_state=None):
    adapted, pre, end = train_adapt(params, task, inner_state)
    _, metrics = query_metrics(model, loss_fn, metrics_fn, adapted, task, pre)
    grads = jax.tree.map(lambda t, p: t - p, params, adapted)
    return MetaGradient(grads, lax.stop_gradient(metrics)), end

  def implicit_gradient(params, task: Task, inner_state=None):
    # theta is a constant of the inner problem: nothing is differentiated through
    # the inner loop, which is what keeps iMAML's memory independent of steps.
    theta = lax.stop_gradient(params)
    lam = rule.regularization
    # No minibatches: checked above.
    adapted, pre, end = train_adapt(theta, task, inner_state)
    query_grad, metrics = jax.grad(
      lambda p: query_metrics(model, loss_fn, metrics_fn, p, task, pre),
      has_aux=True,
    )(adapted)
    support = _full(model, loss_fn, task.support_inputs, task.support_targets)
    # Forward-over-reverse Hessian-vector products; linearizing once keeps the
    # primal gradient computation out of every CG iteration.
    support_grad, hvp = jax.linearize(jax.grad(support), adapted)

    identity, curvature = 1 + estimator.cg_damping, lam + estimator.hessian_damping

    def matvec(v):
      return jax.tree.map(lambda x, hv: identity * x + hv / curvature, v, hvp(v))

    grads, _ = cg(
      matvec, query_grad, tol=estimator.cg_tolerance, maxiter=estimator.cg_steps
    )
    # Whether the formula's two assumptions held, as metrics: the inner loop reached
    # the proximal optimum (the proximal objective's gradient there, relative to
    # its value at theta, where the proximal term vanishes), and CG solved the
    # system (its relative residual). Each costs one more gradient or HVP per task.
    proximal_grad = jax.tree.map(
      lambda g, p, t: g + lam * (p - t), support_grad, adapted, theta
    )
    residual = jax.tree.map(jnp.subtract, matvec(grads), query_grad)
    metrics = {
      **metrics,
      'inner_gradient_ratio': _ratio(proximal_grad, jax.grad(support)(theta)),
      'cg_relative_residual': _ratio(residual, query_grad),
    }
    return MetaGradient(grads, lax.stop_gradient(metrics)), end

  task_fn = {
    est.SECOND_ORDER: through_adaptation,
    est.FIRST_ORDER: through_adaptation,
    est.REPTILE: reptile_direction,
    est.IMPLICIT: implicit_gradient,
  }[kind]

  def check(meta_params, batch) -> None:
    params, _ = split(_check_meta_params(meta_params, learns, rule.shared))
    check_model_accepts(model, params, batch.support_inputs[0], 'support inputs')

  def fresh(meta_params, task: Task) -> MetaGradient:
    return task_fn(meta_params, task)[0]

  batched = over_tasks(fresh, batching=batching, chunk_size=chunk_size, check=check)

  def carrying(meta_gradient: MetaGradient, end) -> MetaGradient:
    # The carried part of the grads is the inner state's next value (Carry).
    return MetaGradient(
      InnerStateParams(meta_gradient.grads, end), meta_gradient.metrics
    )

  def in_order(meta_params: InnerStateParams, batch) -> MetaGradient:
    params, inner_state = _check_inner_state_params(meta_params)
    check_task_batch_shapes(batch)
    check(params, batch)
    return carrying(
      *mean_over_tasks_in_order(
        lambda task, state: task_fn(params, Task(*task), state), batch, inner_state
      )
    )

  def task_gradient(meta_params, task: Task, step=None) -> MetaGradient:
    del step  # no schedule
    if persistent:
      params, inner_state = _check_inner_state_params(meta_params)
      return carrying(*task_fn(params, task, inner_state))
    _check_meta_params(meta_params, learns, rule.shared)
    return fresh(meta_params, task)

  def meta_gradient(meta_params, batch, step=None) -> MetaGradient:
    del step  # no schedule
    return (in_order if persistent else batched)(meta_params, batch)

  predict = adapt_then_apply(
    model,
    support_adapter(
      model,
      loss_fn,
      rule,
      steps=test,
      batch_size=test_batch_size,
      persistent_inner_state=persistent,
    ),
  )

  carry = INNER_STATE_CARRY if persistent else NO_CARRY

  def model_part(tree):
    """The model's params (or their gradient) in meta-params (or meta-grads)."""
    return split(carry.split(tree)[0])[0]

  def class_labels(meta_params, batch) -> ClassLabels | None:
    return model_classes(model, model_part(meta_params), batch)

  return MetaLearner(
    name,
    init,
    meta_gradient,
    predict,
    task_gradient,
    model_part if learns or persistent else identity,
    class_labels,
    carry,
  )


@with_gradient_options
def optimizer_learner(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_learning_rate: float | None = None,
  inner_optimizer: optax.GradientTransformation | None = None,
  head: HeadSelector | None = None,
  estimator: Estimator,
  inner_steps: int,
  name: str,
  **options: Unpack[GradientOptions],
) -> MetaLearner:
  """``gradient_learner`` whose rule is ``inner_optimizer`` (default: SGD at
  ``inner_learning_rate``), the same at every step, for every parameter or only
  for the leaves ``head`` selects (``jmeta.inner_rules.head_only``: ANIL). The
  rule's parameters come first, then ``gradient_learner``'s."""
  rule = inner_rule(inner_optimizer, inner_learning_rate)
  return gradient_learner(
    model,
    loss_fn,
    rule=rule if head is None else head_only(rule, head),
    estimator=estimator,
    inner_steps=inner_steps,
    name=name,
    **options,
  )


def model_classes(model: Model, params: Params, batch) -> ClassLabels | None:
  """The classes of a classifier ``model`` on ``batch``: its output width, if the
  targets are integer labels (see ``jmeta.learner.output_classes``). Trace time."""
  outputs = check_model_accepts(
    model, params, batch.support_inputs[0], 'support inputs'
  )
  return output_classes(outputs, batch.support_targets[0])


def _check_meta_params(meta_params: Any, learns: bool, shared: bool = False) -> Any:
  if learns and not isinstance(meta_params, MetaParams):
    raise ValueError(
      "this learner's inner rule learns its own parameters, so it takes "
      f'MetaParams(init, rule), got {type(meta_params).__name__}; build them with '
      'learner.init(model_params).'
    )
  if learns and not shared:
    structure = jax.tree.structure(meta_params.init)
    if jax.tree.structure(meta_params.rule) != structure:
      raise ValueError(
        'MetaParams.rule must have the structure of init: got '
        f'{jax.tree.structure(meta_params.rule)} and {structure}.'
      )
    for p, r in zip(
      jax.tree.leaves(meta_params.init), jax.tree.leaves(meta_params.rule)
    ):
      if jnp.shape(p) != jnp.shape(r):
        raise ValueError(
          'every rule parameter has the shape of its parameter; got a parameter of '
          f'shape {jnp.shape(p)} with rule parameters of shape {jnp.shape(r)}.'
        )
  return meta_params


def _check_persistent(learns: bool, batching: str) -> None:
  if learns:
    raise ValueError(
      "persistent_inner_state=True keeps a fixed inner optimizer's state from task "
      'to task; a learned rule (Meta-SGD, the meta-LSTM) builds its optimizer from '
      'its meta-params, so it takes no persistent state.'
    )
  if batching not in ('auto', 'map'):
    raise ValueError(
      f'persistent_inner_state=True passes the inner state from task to task, so '
      f'the tasks run in order; batching={batching!r} would run them side by side. '
      "Use batching='map' (or 'auto')."
    )


def _check_inner_state_params(meta_params: Any) -> tuple[Params, Any]:
  if not isinstance(meta_params, InnerStateParams):
    raise ValueError(
      'this learner carries its inner optimizer state (persistent_inner_state='
      f'True), so it takes InnerStateParams(params, inner_state), got '
      f'{type(meta_params).__name__}; build them with learner.init(model_params).'
    )
  return meta_params.params, meta_params.inner_state


def _ratio(a, b) -> jax.Array:
  """||a|| / ||b||, 0 where both vanish (a zero gradient is solved exactly)."""
  norm_b = optax.tree.norm(b)
  return optax.tree.norm(a) / jnp.maximum(norm_b, jnp.finfo(norm_b.dtype).tiny)


def _full(model: Model, loss_fn: LossFn, inputs, targets):
  return lambda p: loss_fn(model.apply(p, inputs), targets)


def _proximal(objective, theta: Params, lam: float):
  def proximal(phi, *x):
    return objective(phi, *x) + 0.5 * lam * squared_distance(phi, theta)

  return proximal
