"""Meta-gradient estimators side by side on one batch, against a reference.

First-order approximations are judged by how far they point from the exact
second-order MAML gradient (Finn et al., 2017, Sec. 5.2; Nichol et al., 2018,
Sec. 5; Rajeswaran et al., 2019, Sec. 4): ``compare_estimators`` computes every
estimator's meta-gradient on the same params and ``TaskBatch`` and reports, for
each, g's agreement with the reference's g_ref,

  cosine = <g, g_ref> / (||g|| ||g_ref||),
  norm_ratio = ||g|| / ||g_ref||,
  relative_error = ||g - g_ref|| / ||g_ref||,

over all leaves flattened and per layer, with the compiled program's wall time and
memory.

Example::

  from jmeta.compare import compare_estimators, default_estimators

  ests = default_estimators(model, loss, inner_steps=5, inner_learning_rate=0.01)
  report = compare_estimators(ests, params, batch)
  report['fomaml'].cosine, report['fomaml'].layer_cosine['layer_0']
  print(format_comparison(report, layers=True))
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from jmeta.algorithms.imaml import imaml
from jmeta.algorithms.maml import fomaml, maml
from jmeta.algorithms.maml_plus_plus import MAMLPlusPlusParams, maml_plus_plus
from jmeta.algorithms.reptile import reptile
from jmeta.gradient_learner import InnerLoopOptions, gradient_learner, optimizer_learner
from jmeta.inner_loop import LossFn
from jmeta.learner import LearnerOptions, MetaGradient, MetaLearner, identity
from jmeta.models.base import Model, Params
from jmeta.options import lists_options
from jmeta.tasks.batch import Task, TaskBatch
from jmeta.validation import check_positive_int, check_steps

if TYPE_CHECKING:
  from typing_extensions import Unpack


class GradientComparison(NamedTuple):
  """One estimator's meta-gradient against the reference's, and its cost.

  Attributes:
    cosine: <g, g_ref> / (||g|| ||g_ref||) over all leaves flattened; exactly 1.0
      when g == g_ref, NaN when either is zero.
    layer_cosine: the cosine per top-level key of the params (e.g. 'layer_0',
      over every leaf under it) and per leaf (its '/'-joined key path, e.g.
      'layer_0/w'); empty when the params are a single array.
    norm_ratio: ||g|| / ||g_ref||.
    relative_error: ||g - g_ref|| / ||g_ref||.
    seconds: median wall time of one call of the compiled ``meta_gradient``.
    compile_seconds: time to trace, lower and compile ``meta_gradient``.
    peak_bytes: argument + output + temporary bytes of the compiled program
      (less aliased bytes, counted in both), or None where the backend does not
      report them.
    metrics: the estimator's metrics as Python floats.
  """

  cosine: float
  layer_cosine: dict[str, float]
  norm_ratio: float
  relative_error: float
  seconds: float
  compile_seconds: float
  peak_bytes: int | None
  metrics: dict[str, float]


# --- Pure tree math -----------------------------------------------------------------


def _leaves_pair(a: Params, b: Params) -> tuple[list, list]:
  leaves_a, def_a = jax.tree.flatten(a)
  leaves_b, def_b = jax.tree.flatten(b)
  if def_a != def_b:
    raise ValueError(
      f'the two gradients differ in structure: {def_a} and {def_b}; '
      'compare gradients of the same params.'
    )
  for x, y in zip(leaves_a, leaves_b):
    if jnp.shape(x) != jnp.shape(y):
      raise ValueError(
        f'the two gradients differ in shape: a leaf of shape {jnp.shape(x)} '
        f'against one of shape {jnp.shape(y)}.'
      )
  return leaves_a, leaves_b


def _as_float(x: jax.Array) -> jax.Array:
  # Half-precision sums lose too much; float64 stays float64.
  return jnp.asarray(x, jnp.promote_types(jnp.result_type(x), jnp.float32))


def _max_abs(leaves: list) -> jax.Array:
  # A max is exact in any order: equal inputs give equal scales, bitwise.
  return jnp.max(jnp.stack([jnp.max(jnp.abs(_as_float(x)), initial=0) for x in leaves]))


def _scaled(leaves: list) -> tuple[jax.Array, list]:
  # Dividing by the largest |entry| keeps every sum of squares in [1, size]: no
  # overflow or underflow, whatever the gradient's scale.
  scale = _max_abs(leaves)
  scale = jnp.where(scale > 0, scale, 1)
  return scale, [_as_float(x) / scale for x in leaves]


def _norms(*trees: list) -> list[jax.Array]:
  """Euclidean norms of lists of leaves, as the rows of one reduction per leaf.

  Sharing the reduction makes the norms of equal trees the same float, bitwise.
  """
  scales, scaled = zip(*(_scaled(leaves) for leaves in trees))
  sums = sum(
    jnp.sum(jnp.stack([jnp.square(x) for x in xs]).reshape(len(xs), xs[0].size), 1)
    for xs in zip(*scaled)
  )
  return [s * jnp.sqrt(sums[i]) for i, s in enumerate(scales)]


def _unit(leaves: list) -> list:
  (norm,) = _norms(leaves)
  return [_as_float(x) / norm for x in leaves]


def _cosine(leaves_a: list, leaves_b: list) -> jax.Array:
  # For unit vectors <u, v> = 1 - ||u - v||^2 / 2. When a == b, u and v agree to
  # an ulp or so per entry however XLA orders the reductions or lowers the
  # divisions (XLA:CPU may multiply by an approximate reciprocal), so
  # ||u - v||^2 / 2 ~ 1e-32 is far below 2^-54 and 1 minus it rounds to exactly 1.
  # The textbook <a, b> / (||a|| ||b||) does not: with a = (1, 1),
  # fl(sqrt(2) * sqrt(2)) = 2 + 4.4e-16, and compiled it misses 1 by an ulp.
  u, v = _unit(leaves_a), _unit(leaves_b)
  gap = sum(jnp.sum(jnp.square(x - y)) for x, y in zip(u, v))
  # ||u - v||^2 can pass 4 by an ulp when v = -u.
  return jnp.clip(1 - gap / 2, -1, 1)


def tree_cosine(a: Params, b: Params) -> jax.Array:
  """<a, b> / (||a|| ||b||) over all leaves flattened; exactly 1 when a == b.

  Computed as 1 - ||a / ||a|| - b / ||b||||^2 / 2, accurate to a few ulps of 1.
  NaN when either tree is all zeros: the angle is undefined.
  """
  return _cosine(*_leaves_pair(a, b))


def tree_norm_ratio(a: Params, b: Params) -> jax.Array:
  """||a|| / ||b||, Euclidean norms over all leaves flattened; exactly 1 if a == b."""
  norm_a, norm_b = _norms(*_leaves_pair(a, b))
  # XLA:CPU may lower the division to a multiply by an approximate reciprocal,
  # which misses 1 by an ulp even for equal norms: equal, finite, nonzero norms
  # give 1 by fiat (0 / 0 stays NaN).
  equal = (norm_a == norm_b) & jnp.isfinite(norm_b) & (norm_b > 0)
  return jnp.where(equal, jnp.ones_like(norm_a), norm_a / norm_b)


def tree_relative_error(a: Params, b: Params) -> jax.Array:
  """||a - b|| / ||b|| over all leaves flattened; exactly 0 when a == b."""
  leaves_a, leaves_b = _leaves_pair(a, b)
  diff = [_as_float(x) - _as_float(y) for x, y in zip(leaves_a, leaves_b)]
  norm_diff, norm_b = _norms(diff, leaves_b)
  return norm_diff / norm_b


def _path_name(path) -> str:
  return jax.tree_util.keystr(tuple(path), simple=True, separator='/')


def layer_cosines(a: Params, b: Params) -> dict[str, jax.Array]:
  """The cosine of a and b per top-level key and per leaf.

  Keys are '/'-joined key paths: each top-level entry of the params (e.g.
  'layer_0', the cosine over all leaves under it) and each leaf (e.g.
  'layer_0/w'). Where a top-level entry is itself a leaf the two coincide. Params
  that are a single array have no layers: the result is empty.
  """
  leaves_a, leaves_b = _leaves_pair(a, b)
  paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(a)[0]]
  groups: dict[str, list[int]] = {}
  for i, path in enumerate(paths):
    if not path:
      continue
    groups.setdefault(_path_name(path[:1]), []).append(i)
    groups.setdefault(_path_name(path), [i])
  return {
    name: _cosine([leaves_a[i] for i in idx], [leaves_b[i] for i in idx])
    for name, idx in groups.items()
  }


@jax.jit
def _agreement(g: Params, ref: Params):
  return (
    tree_cosine(g, ref),
    layer_cosines(g, ref),
    tree_norm_ratio(g, ref),
    tree_relative_error(g, ref),
  )


# --- Running and timing the estimators ----------------------------------------------


def _named(
  estimators: Mapping[str, MetaLearner] | Sequence[MetaLearner],
) -> dict[str, MetaLearner]:
  if isinstance(estimators, Mapping):
    return dict(estimators)
  names = [est.name for est in estimators]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(
      f'duplicate estimator names {duplicates}: pass a mapping name -> estimator '
      'to compare two configurations of one estimator.'
    )
  return dict(zip(names, estimators))


def _peak_bytes(compiled: jax.stages.Compiled) -> int | None:
  # Best effort by JAX's own account: memory_analysis may be missing, raise or
  # return None on some backends, and is per device (a list) on others.
  try:
    stats = compiled.memory_analysis()
  except (NotImplementedError, RuntimeError):
    return None
  if isinstance(stats, (list, tuple)):
    stats = stats[0] if stats else None
  fields = ('temp', 'argument', 'output', 'alias')
  sizes = [getattr(stats, f'{f}_size_in_bytes', None) for f in fields]
  if stats is None or any(s is None for s in sizes):
    return None
  temp, argument, output, alias = sizes
  total = int(temp + argument + output - alias)
  return total if total > 0 else None


class _Run(NamedTuple):
  grads: Params
  metrics: dict[str, float]
  seconds: float
  compile_seconds: float
  peak_bytes: int | None


def _run(est: MetaLearner, params: Any, batch: TaskBatch, repeats: int) -> _Run:
  start = time.perf_counter()
  compiled = jax.jit(est.meta_gradient).lower(params, batch).compile()
  compile_seconds = time.perf_counter() - start
  # The warm-up call pays for allocation and transfers, not the estimator.
  grads, metrics = jax.block_until_ready(compiled(params, batch))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, batch))
    times.append(time.perf_counter() - start)
  return _Run(
    est.init_gradient(grads),
    {k: float(v) for k, v in metrics.items()},
    statistics.median(times),
    compile_seconds,
    _peak_bytes(compiled),
  )


def compare_estimators(
  estimators: Mapping[str, MetaLearner] | Sequence[MetaLearner],
  params: Params,
  batch: TaskBatch,
  *,
  reference: str = 'maml',
  params_for: Mapping[str, Any] | None = None,
  timing_repeats: int = 3,
) -> dict[str, GradientComparison]:
  """Every estimator's meta-gradient on ``params`` and ``batch``, against ``reference``.

  ``estimators`` is a mapping name -> estimator, or a sequence named by each
  ``estimator.name`` (names must then be unique); ``reference`` must be one of the
  names. Every learner gets ``learner.init(params)`` (its meta-params built from
  the model's params) unless ``params_for[name]`` gives its own meta-params. Each
  meta-gradient is compared through ``learner.init_gradient``: the gradient with
  respect to the model's initialisation, which has the reference's structure.

  Each ``meta_gradient`` is compiled ahead of time (``compile_seconds``), called
  once to warm up, then ``timing_repeats`` times (``seconds`` is the median).
  Reptile's "gradient" is theta - phi, which scales with the inner learning rate
  and steps: its cosine is comparable with the others', its norm ratio is not.

  Returns:
    name -> ``GradientComparison``, in the order given; the reference's own entry
    has cosine 1, norm_ratio 1 and relative_error 0, exactly.
  """
  named = _named(estimators)
  if reference not in named:
    raise ValueError(
      f'reference {reference!r} is not among the estimators {list(named)}; '
      'pass reference= one of them.'
    )
  params_for = dict(params_for or {})
  unknown = sorted(set(params_for) - set(named))
  if unknown:
    raise ValueError(
      f'params_for names {unknown} that are not among the estimators {list(named)}.'
    )
  repeats = check_positive_int(timing_repeats, 'timing_repeats')

  runs = {
    name: _run(
      est, params_for[name] if name in params_for else est.init(params), batch, repeats
    )
    for name, est in named.items()
  }
  ref = runs[reference].grads
  report = {}
  for name, run in runs.items():
    try:
      cosine, layers, ratio, error = _agreement(run.grads, ref)
    except ValueError as e:
      raise ValueError(
        f'cannot compare estimator {name!r} with the reference {reference!r}: {e}'
      ) from e
    report[name] = GradientComparison(
      cosine=float(cosine),
      layer_cosine={k: float(v) for k, v in layers.items()},
      norm_ratio=float(ratio),
      relative_error=float(error),
      seconds=run.seconds,
      compile_seconds=run.compile_seconds,
      peak_bytes=run.peak_bytes,
      metrics=run.metrics,
    )
  return report


# --- Printing a report ------------------------------------------------------------


def _fixed(x: float, precision: int) -> str:
  # Fixed point where it reads well; scientific where fixed point would print a
  # small nonzero error as 0.0000 or a huge ratio as a long string of digits.
  if math.isnan(x) or x == 0 or 10**-precision <= abs(x) < 1e5:
    return f'{x:.{precision}f}'
  return f'{x:.{max(precision - 2, 1)}e}'


def format_comparison(
  report: Mapping[str, GradientComparison], *, layers: bool = False, precision: int = 4
) -> str:
  """A readable table of a ``compare_estimators`` report, one row per estimator.

  Columns: cosine, norm ratio and relative error against the reference's
  meta-gradient (``precision`` decimals; scientific notation for a value too small
  to show), the median time of one call in ms, the compile time in s, and the
  compiled program's memory in MiB ('n/a' where the backend does not report it).
  With ``layers=True`` every estimator's row is followed by one row per entry of
  its ``layer_cosine`` (top-level keys, then their leaves indented), giving that
  layer's cosine.

  Example::

    print(jmeta.format_comparison(jmeta.compare_estimators(ests, params, batch)))
  """
  precision = check_positive_int(precision, 'precision')
  rows = []
  for name, c in report.items():
    memory = f'{c.peak_bytes / 2**20:.1f}' if c.peak_bytes else 'n/a'
    rows.append(
      [
        name,
        _fixed(c.cosine, precision),
        _fixed(c.norm_ratio, precision),
        _fixed(c.relative_error, precision),
        f'{1e3 * c.seconds:.2f}',
        f'{c.compile_seconds:.2f}',
        memory,
      ]
    )
    if layers:
      for key, cosine in c.layer_cosine.items():
        indent = '  ' * (1 + key.count('/'))
        rows.append([indent + key, _fixed(cosine, precision)] + [''] * 5)
  header = [
    'estimator',
    'cosine',
    'norm ratio',
    'rel. error',
    'time (ms)',
    'compile (s)',
    'memory (MiB)',
  ]
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  lines = [
    '  '.join(
      [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
    ).rstrip()
    for row in [header, *rows]
  ]
  return '\n'.join(lines)


@lists_options(LearnerOptions, gradient_learner)
def maml_plus_plus_at(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  inner_learning_rate: float,
  iteration: int,
  anneal_iterations: int,
  first_order_while_annealing: bool,
  **options: Unpack[LearnerOptions],
) -> MetaLearner:
  """MAML++'s meta-gradient at training iteration ``iteration``, on the model's params.

  The multi-step loss sum_j w_j(t) L^query(phi_j) with t = ``iteration`` and w
  annealed over ``anneal_iterations`` (``jmeta.maml_plus_plus.msl_weights``), at
  a fixed inner rate; with ``first_order_while_annealing`` also first order while
  t < ``anneal_iterations`` (derivative-order annealing). It takes and returns
  plain model params (no learned rates or per-step weights), so it compares
  directly with MAML: from t = ``anneal_iterations`` on it is MAML's gradient.
  """
  t = check_steps(iteration, 'iteration')
  anneal = check_steps(anneal_iterations, 'anneal_iterations')
  if anneal < 1:
    raise ValueError(f'anneal_iterations must be >= 1, got {anneal}.')
  est = maml_plus_plus(
    model,
    loss_fn,
    inner_steps=inner_steps,
    inner_learning_rate=inner_learning_rate,
    multi_step_loss=True,
    msl_anneal_iterations=anneal,
    derivative_order_annealing_iterations=anneal if first_order_while_annealing else 0,
    **options,
  )

  def meta_gradient(params: Params, batch: TaskBatch, step=None) -> MetaGradient:
    del step  # fixed at ``iteration``
    full = MAMLPlusPlusParams(params, None, None)
    grads, metrics = est.meta_gradient(full, batch, jnp.asarray(t))
    return MetaGradient(grads.init, metrics)

  def task_gradient(params: Params, task: Task, step=None) -> MetaGradient:
    one = jax.tree.map(lambda x: jnp.asarray(x)[None], TaskBatch(*task))
    return meta_gradient(params, one)

  def predict(params: Params, *task):
    return est.predict(MAMLPlusPlusParams(params, None, None), *task)

  name = 'maml++_first_order' if first_order_while_annealing else 'maml++'
  return MetaLearner(name, identity, meta_gradient, predict, task_gradient, identity)


class ComparisonOptions(InnerLoopOptions, LearnerOptions, total=False):
  """What the estimators of ``default_estimators`` share: their inner loop and the
  ``LearnerOptions``."""


@lists_options(ComparisonOptions, optimizer_learner)
def default_estimators(
  model: Model,
  loss_fn: LossFn,
  *,
  imaml_regularization: float = 1.0,
  imaml_cg_steps: int = 5,
  maml_plus_plus_iteration: int = 0,
  maml_plus_plus_anneal_iterations: int = 10_000,
  **inner: Unpack[ComparisonOptions],
) -> dict[str, MetaLearner]:
  """MAML, first-order MAML, Reptile, iMAML and MAML++ with the same inner loop.

  Returns ``{'maml', 'fomaml', 'reptile', 'imaml'}`` -> estimator, ready for
  ``compare_estimators``. iMAML runs the same inner optimizer on its proximal
  problem, with lambda = ``imaml_regularization`` and ``imaml_cg_steps``
  conjugate-gradient steps. With plain SGD (``inner_learning_rate``, no
  ``inner_optimizer``) it also has MAML++ at training iteration
  ``maml_plus_plus_iteration`` of a ``maml_plus_plus_anneal_iterations`` annealing
  (``maml_plus_plus_at``): ``'maml++'``, the multi-step loss at second order, and
  ``'maml++_first_order'``, with derivative-order annealing too.
  """
  estimators = {
    'maml': maml(model, loss_fn, **inner),
    'fomaml': fomaml(model, loss_fn, **inner),
    'reptile': reptile(model, loss_fn, **inner),
  }
  try:
    estimators['imaml'] = imaml(
      model,
      loss_fn,
      regularization=imaml_regularization,
      cg_steps=imaml_cg_steps,
      **inner,
    )
  except ValueError as e:
    raise ValueError(f'default_estimators, imaml_regularization: {e}') from e
  plain_sgd = inner.get('inner_optimizer') is None
  if plain_sgd and inner.get('inner_learning_rate') is not None:
    for first_order in (False, True):
      est = maml_plus_plus_at(
        model,
        loss_fn,
        iteration=maml_plus_plus_iteration,
        anneal_iterations=maml_plus_plus_anneal_iterations,
        first_order_while_annealing=first_order,
        **{k: v for k, v in inner.items() if k != 'inner_optimizer'},
      )
      estimators[est.name] = est
  return estimators
