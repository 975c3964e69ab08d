"""The outer (meta) update: an optax step on a meta-gradient, jit-compiled once."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jmeta.learner import MetaLearner, label_violation
from jmeta.models.base import Params
from jmeta.sharding import replicate, sharded_meta_gradient, task_sharding
from jmeta.tasks.batch import TaskBatch


class BadLabels(NamedTuple):
  """The first batch whose labels the learner refuses (int32 scalars).

  ``step`` is -1 until then; ``num_classes`` is what the labels index (the model's
  output width, a metric learner's ``n_way``), ``lowest`` and ``highest`` the
  batch's extreme labels.
  """

  step: jax.Array
  num_classes: jax.Array
  lowest: jax.Array
  highest: jax.Array


class MetaTrainState(NamedTuple):
  """Everything the outer loop carries.

  ``nonfinite_step`` is -1 until the meta-loss or meta-gradient is first non-finite,
  then the step at which that happened. ``bad_labels`` records the first batch
  whose labels lie outside ``[0, num_classes)`` of a classifier (see
  ``MetaLearner.class_labels``). From either on, updates are skipped, so the params
  stay those of the last good step; ``raise_if_nonfinite`` reports both.

  Bit i of ``zero_gradients`` (a uint32) is set if the meta-gradient of step
  ``step - 1 - i`` was exactly zero, for the last 32 steps. A network whose ReLUs
  all died gets such gradients at almost every step and never recovers;
  ``raise_if_failed`` reports it. It is the last field, so checkpoints saved before
  it existed restore with it at 0.
  """

  step: jax.Array
  params: Params
  opt_state: optax.OptState
  nonfinite_step: jax.Array
  bad_labels: BadLabels
  zero_gradients: jax.Array


class MetaTrainer(NamedTuple):
  """``init(meta_params) -> state``, the jitted ``step(state, batch) -> (state,
  metrics)`` and ``update``, the same step as a pure function, not compiled.

  ``with_task_sampling(trainer, sample_tasks)`` composes a trainer with a task
  sampler, so that ``step(state, key, *data)`` samples inside the compiled step.
  """

  init: Callable[[Params], MetaTrainState]
  step: Callable[..., tuple[MetaTrainState, dict[str, jax.Array]]]
  update: Callable[..., tuple[MetaTrainState, dict[str, jax.Array]]]


class NonFiniteMetaLossError(FloatingPointError):
  """The meta-loss or meta-gradient became NaN or infinite during training."""


class ZeroMetaGradientError(FloatingPointError):
  """The meta-gradient was exactly zero at most recent steps: training has stopped."""


class BadLabelsError(ValueError):
  """A training batch had class labels outside ``[0, num_classes)``."""


class MetaStepOutOfMemoryError(MemoryError):
  """The device ran out of memory in a meta-update; the message names the knobs."""


# What shrinks a meta-update's memory, in the library's terms.
MEMORY_KNOBS = (
  "batching='chunked' with a small chunk_size (or 'map': one task at a time)",
  'remat=True (recompute each inner step instead of storing it)',
  'first order (fomaml, or first_order=True in adapt)',
  'a smaller meta-batch',
)


def is_out_of_memory(error: BaseException) -> bool:
  """Whether ``error`` is XLA's out-of-memory (RESOURCE_EXHAUSTED) runtime error."""
  return isinstance(error, jax.errors.JaxRuntimeError) and (
    'RESOURCE_EXHAUSTED' in str(error) or 'Out of memory' in str(error)
  )


def out_of_memory_error(
  error: BaseException, knobs: tuple[str, ...] = MEMORY_KNOBS
) -> MetaStepOutOfMemoryError:
  """A ``MetaStepOutOfMemoryError`` for XLA's ``error``, listing ``knobs``."""
  first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
  return MetaStepOutOfMemoryError(
    f'the meta-update ran out of device memory ({first}). To reduce its memory, '
    'use any of: ' + '; '.join(knobs) + '. benchmarks/memory_inner_steps.py '
    'measures what each saves.'
  )


def make_meta_trainer(
  learner: MetaLearner,
  optimizer: optax.GradientTransformation,
  *,
  jit: bool = True,
  mesh: Mesh | None = None,
  axis_name: str = 'tasks',
) -> MetaTrainer:
  """Builds the outer loop: theta <- theta + optimizer(meta_gradient(theta, batch, t)).

  The optimizer updates the trained part of the meta-params; the part the learner
  carries (``learner.carry``) is replaced by the one its meta-gradient returns.

  ``t`` is the state's step, so learners with schedules (MAML++'s annealing) follow
  it. The step is compiled once, on its first call, and reused for every batch of
  the same shapes; ``jmeta.precompile(trainer.step, state, batch)`` compiles it
  before the loop and hands the compiler's freed host memory back first.
  Non-finite meta-losses are recorded in the state rather than checked on the host
  every step; call ``raise_if_failed(state)`` whenever metrics are fetched. So
  are labels outside ``[0, num_classes)`` where the learner knows its classes
  (``learner.class_labels``: a classifier's output width, a metric learner's
  ``n_way``); the check is a few integer reductions on device.

  With a ``mesh``, the task axis of every batch is split over its ``axis_name``
  axis and the state is replicated; see ``jmeta.sharding``. The meta-batch size
  must then be a multiple of the number of devices on that axis, and the
  learner's batching strategy applies to each device's tasks. ``trainer.init``
  takes meta-params: ``trainer.init(learner.init(model_params))``.
  """
  if not isinstance(learner, MetaLearner):
    raise ValueError(
      f'make_meta_trainer takes a jmeta.MetaLearner (e.g. jmeta.maml(...)), got '
      f'{type(learner).__name__}.'
    )
  if mesh is not None:
    task_sharding(mesh, axis_name)  # an unknown axis fails here, not at the first step

  def meta_gradient(params: Params, batch: TaskBatch, iteration: jax.Array):
    # A closure over the (replicated, unbatched) step, so the sharded path vmaps
    # over task blocks only and a schedule's lax.cond stays a cond.
    fn = lambda p, b: learner.meta_gradient(p, b, iteration)  # noqa: E731
    if mesh is not None:
      fn = sharded_meta_gradient(fn, mesh, axis_name)
    return fn(params, batch)

  def init(params: Params) -> MetaTrainState:
    trained, carried = learner.carry.split(params)
    devices = 1 if mesh is None else mesh.shape[axis_name]
    if devices > 1 and jax.tree.leaves(carried):
      raise ValueError(
        f'{learner.name} carries state from one task to the next, so its tasks run '
        f'in order on one device; it cannot split the meta-batch over the '
        f'{devices} devices of the mesh axis {axis_name!r}. '
        'Train it without a mesh (or on a mesh of one device).'
      )
    state = MetaTrainState(
      jnp.zeros((), jnp.int32),
      params,
      optimizer.init(trained),
      jnp.full((), -1, jnp.int32),
      BadLabels(*(jnp.full((), -1, jnp.int32) for _ in BadLabels._fields)),
      jnp.zeros((), jnp.uint32),
    )
    return state if mesh is None else replicate(state, mesh)

  def check_labels(state: MetaTrainState, batch: TaskBatch):
    """(labels ok, the state's ``bad_labels`` after this batch)."""
    spec = None
    if learner.class_labels is not None:
      spec = learner.class_labels(state.params, batch)  # trace time: shapes only
    if spec is None:
      return jnp.array(True), state.bad_labels
    bad, lowest, highest = label_violation(batch, spec)
    first = bad & (state.bad_labels.step < 0)
    found = BadLabels(state.step, jnp.int32(spec.num_classes), lowest, highest)
    record = jax.tree.map(lambda n, o: jnp.where(first, n, o), found, state.bad_labels)
    return ~bad, record

  def update(state: MetaTrainState, batch: TaskBatch):
    grads, metrics = meta_gradient(state.params, batch, state.step)
    trained, _ = learner.carry.split(state.params)
    trained_grads, carried = learner.carry.split(grads)
    updates, opt_state = optimizer.update(trained_grads, state.opt_state, trained)
    params = learner.carry.merge(optax.apply_updates(trained, updates), carried)
    finite = jnp.isfinite(metrics['loss']) & jnp.all(
      jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    labels_ok, bad_labels = check_labels(state, batch)
    ok = finite & labels_ok & (state.nonfinite_step < 0) & (state.bad_labels.step < 0)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
    nonfinite_step = jnp.where(
      finite | (state.nonfinite_step >= 0), state.nonfinite_step, state.step
    )
    leaves = jax.tree.leaves(trained_grads)
    # A learner that trains nothing (all carried) has no gradient to go dead.
    zero = (
      jnp.all(jnp.array([~jnp.any(g) for g in leaves])) if leaves else jnp.array(False)
    )
    zero_gradients = (state.zero_gradients << 1) | zero.astype(jnp.uint32)
    new_state = MetaTrainState(
      state.step + 1,
      keep(params, state.params),
      keep(opt_state, state.opt_state),
      nonfinite_step,
      bad_labels,
      zero_gradients,
    )
    if mesh is not None:
      # Replicated as init made it, so the next step takes it without a reshard.
      new_state, metrics = jax.lax.with_sharding_constraint(
        (new_state, metrics), NamedSharding(mesh, PartitionSpec())
      )
    return new_state, metrics

  return MetaTrainer(init, _compiled(update) if jit else update, update)


def with_task_sampling(
  trainer: MetaTrainer, sample_tasks: Callable[..., TaskBatch], *, jit: bool = True
) -> MetaTrainer:
  """``trainer`` whose ``step(state, key, *data)`` samples its tasks in the step.

  The batch is ``sample_tasks(key, *data)``, traced into the same compiled program
  as the update, so episodes never leave the device. Pass arrays such as a
  device-resident dataset as ``data`` rather than closing over them, so they are
  not baked into the program as constants.
  """

  def update(state: MetaTrainState, key: jax.Array, *data):
    return trainer.update(state, sample_tasks(key, *data))

  return MetaTrainer(trainer.init, _compiled(update) if jit else update, update)


def _compiled(update: Callable) -> Callable:
  jitted = jax.jit(update)

  def checked_step(*args):
    try:
      return jitted(*args)
    except jax.errors.JaxRuntimeError as e:
      if is_out_of_memory(e):
        raise out_of_memory_error(e) from e
      raise

  # Ahead-of-time lowering (compiled memory and cost analysis) stays available.
  checked_step.lower = jitted.lower
  return checked_step


# What makes a meta-loss non-finite, most likely first.
NONFINITE_CAUSES = (
  'an inner optimizer whose second derivative is NaN at a zero gradient: optax '
  'Adam (or RMSprop-like rules) with eps_root=0 under a second-order estimator; '
  'pass e.g. optax.adam(lr, eps_root=1e-8), or a first-order estimator',
  'class labels outside [0, num_classes) where the learner cannot check them '
  '(jmeta.validate_task_batch(batch, num_classes=...) does)',
  'NaN or inf in the task batch (inputs or targets)',
  'an outer or inner learning rate too large',
)


def raise_if_nonfinite(state: MetaTrainState) -> None:
  """Raises if training hit a bad batch, naming the step and the likely cause.

  ``BadLabelsError`` (a ``ValueError``) if a batch had labels outside ``[0,
  num_classes)`` or an episode missing a class in its support set, at or before
  the first non-finite step; else ``NonFiniteMetaLossError`` if the meta-loss or
  meta-gradient became NaN or infinite, listing ``NONFINITE_CAUSES`` in order.
  """
  bad = int(np.asarray(state.nonfinite_step))
  labels = BadLabels(*(int(np.asarray(x)) for x in state.bad_labels))
  if labels.step >= 0 and (bad < 0 or labels.step <= bad):
    raise BadLabelsError(bad_labels_message(labels))
  if bad >= 0:
    causes = _numbered(NONFINITE_CAUSES)
    raise NonFiniteMetaLossError(
      f'the meta-loss or meta-gradient became non-finite at step {bad}; the '
      f'params were frozen at step {bad} and no later update was applied. Likely '
      f'causes, most likely first: {causes}.'
    )


# Why a meta-gradient is exactly zero at most steps, most likely first.
ZERO_GRADIENT_CAUSES = (
  'dead ReLUs: every unit of a layer is negative on every input, so nothing '
  'upstream gets a gradient (most likely in a network without biases or batch '
  'norm); try another seed, a smaller outer learning rate, or batch norm',
  'a loss that does not depend on the trained params (check the model, or the '
  "learner's carry, which takes params out of training)",
  'an outer learning rate so large that one step saturated every unit',
)


# How many of the last steps' meta-gradients ``MetaTrainState`` remembers.
ZERO_GRADIENT_WINDOW = 32


def raise_if_failed(state: MetaTrainState, *, zero_gradient_steps: int = 16) -> None:
  """``raise_if_nonfinite``, then ``ZeroMetaGradientError`` if at least
  ``zero_gradient_steps`` of the last 32 meta-gradients were exactly zero.

  A healthy run never meets an exactly zero meta-gradient. A dead one meets it at
  almost every step, with a non-zero one now and then that revives nothing (Meta
  Networks' seed 0 at 20-way, from step 37 on), so counting a run of them would
  miss it. ``ZERO_GRADIENT_CAUSES`` lists why it happens, most likely first.
  """
  if not 1 <= zero_gradient_steps <= ZERO_GRADIENT_WINDOW:
    raise ValueError(
      f'zero_gradient_steps must be in [1, {ZERO_GRADIENT_WINDOW}] (of the last '
      f'{ZERO_GRADIENT_WINDOW} steps), got {zero_gradient_steps}.'
    )
  raise_if_nonfinite(state)
  bits = int(np.asarray(state.zero_gradients))
  zeros = bin(bits).count('1')
  if zeros >= zero_gradient_steps:
    step = int(np.asarray(state.step))
    last = min(step, ZERO_GRADIENT_WINDOW)
    causes = _numbered(ZERO_GRADIENT_CAUSES)
    raise ZeroMetaGradientError(
      f'the meta-gradient was exactly zero at {zeros} of the last {last} steps (up '
      f'to step {step}), so training has stopped moving the params. Likely '
      f'causes, most likely first: {causes}.'
    )


def _numbered(causes: tuple[str, ...]) -> str:
  """``causes`` as one line: '(1) first; (2) second; ...'."""
  return '; '.join(f'({i}) {c}' for i, c in enumerate(causes, 1))


def bad_labels_message(labels: BadLabels) -> str:
  """The error message for the first refused batch ``labels`` describes."""
  n, lo, hi = labels.num_classes, labels.lowest, labels.highest
  frozen = (
    f'the params were frozen at step {labels.step} and no later update was applied.'
  )
  if lo < 0 or hi >= n:
    return (
      f'labels out of range: the task batch at step {labels.step} has labels in '
      f"[{lo}, {hi}], outside [0, {n}) ({n} classes: the width of the model's "
      f"output, or a metric learner's n_way); {frozen} Relabel each task's classes "
      f"as 0..{n - 1}, or build the model or learner for the episodes' number of "
      'classes.'
    )
  return (
    f'the task batch at step {labels.step} has an episode whose support set has no '
    f'example of some class in [0, {n}) (labels in [{lo}, {hi}]), so n_way={n} is '
    f"more than the episodes' classes; {frozen} Pass the sampler's n_way to "
    'metric_estimator.'
  )
