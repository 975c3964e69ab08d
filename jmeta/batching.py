"""How a function of one task runs over a batch of tasks.

* ``'vmap'``: all tasks at once. Fastest where per-task weights batch well (GPU,
  MLPs); with per-task convolution weights XLA lowers it to grouped convolutions.
* ``'map'``: one task after another (``lax.scan``), memory of one task.
* ``'chunked'``: ``lax.scan`` over chunks of ``chunk_size`` tasks, ``vmap`` within.
* ``'auto'``: ``default_batching()`` for the current backend.

``mean_over_tasks`` accumulates a running sum in the scan, so 'map' and 'chunked'
never hold per-task results for the whole batch. ``mean_over_tasks_in_order`` runs
the tasks one after another, each handed the state the one before it left (an
inner optimizer's state that persists from task to task).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

import jax
import jax.numpy as jnp
from jax import lax

from jmeta.options import lists_options
from jmeta.validation import check_choice

if TYPE_CHECKING:
  from typing_extensions import Unpack

BATCHING_STRATEGIES = ('auto', 'vmap', 'map', 'chunked')


class StrategyOptions(TypedDict, total=False):
  """How ``map_tasks`` and ``mean_over_tasks`` batch: ``strategy`` and its
  ``chunk_size``; ``resolve_strategy`` has their defaults."""

  strategy: str
  chunk_size: int | None


class BatchingOptions(TypedDict, total=False):
  """How the learner-level functions batch a function of one task: ``batching``
  (a strategy of ``BATCHING_STRATEGIES``, ``map_tasks``' ``strategy``) and its
  ``chunk_size``; ``jmeta.learner.per_task`` has their defaults."""

  batching: str
  chunk_size: int | None


def default_batching(backend: str | None = None) -> str:
  """'map' on CPU, 'vmap' elsewhere.

  On XLA:CPU, second-order MAML with Conv4 ran several times faster with 'map' than
  with 'vmap' (``benchmarks/results/cpu_meta_step.md``): vmapped per-task
  convolution weights become grouped convolutions, which XLA:CPU runs slowly.
  """
  backend = backend or jax.default_backend()
  return 'map' if backend == 'cpu' else 'vmap'


def check_batching(strategy: str, chunk_size: int | None) -> str:
  """Validates a strategy name and its chunk size; returns the name."""
  check_choice(strategy, BATCHING_STRATEGIES, 'batching strategy')
  if strategy == 'chunked':
    if (
      not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
      raise ValueError(
        f"batching='chunked' needs a positive int chunk_size, got {chunk_size!r}."
      )
  return strategy


def resolve_strategy(
  strategy: str = 'auto', chunk_size: int | None = None
) -> tuple[str, int | None]:
  """The checked ``(strategy, chunk_size)`` to run, ``'auto'`` being
  ``default_batching()``."""
  strategy = check_batching(strategy, chunk_size)
  return (default_batching() if strategy == 'auto' else strategy), chunk_size


def _num_tasks(tasks: Any) -> int:
  sizes = {x.shape[0] for x in jax.tree.leaves(tasks)}
  if len(sizes) != 1:
    raise ValueError(
      f'every leaf of the task batch needs the same leading (task) '
      f'axis; got sizes {sorted(sizes)}.'
    )
  return sizes.pop()


def _chunk(tasks: Any, chunk_size: int) -> Any:
  n = _num_tasks(tasks)
  if n % chunk_size:
    raise ValueError(
      f'chunk_size={chunk_size} does not divide the {n} tasks of the batch; choose '
      f'a divisor of {n} so that no task is dropped.'
    )
  return jax.tree.map(
    lambda x: x.reshape(n // chunk_size, chunk_size, *x.shape[1:]), tasks
  )


@lists_options(StrategyOptions, resolve_strategy)
def map_tasks(
  fn: Callable[[Any], Any], tasks: Any, **options: Unpack[StrategyOptions]
) -> Any:
  """``fn`` applied to every task; outputs stacked along a leading task axis."""
  strategy, chunk_size = resolve_strategy(**options)
  if strategy == 'vmap':
    return jax.vmap(fn)(tasks)
  if strategy == 'map':
    return lax.map(fn, tasks)
  out = lax.map(jax.vmap(fn), _chunk(tasks, chunk_size))
  return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)


@lists_options(StrategyOptions, resolve_strategy)
def mean_over_tasks(
  fn: Callable[[Any], Any], tasks: Any, **options: Unpack[StrategyOptions]
) -> Any:
  """The mean over tasks of ``fn(task)``, a pytree of arrays."""
  strategy, chunk_size = resolve_strategy(**options)
  n = _num_tasks(tasks)
  if strategy == 'vmap':
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), jax.vmap(fn)(tasks))
  if strategy == 'map':
    body, xs = fn, tasks
  else:
    xs = _chunk(tasks, chunk_size)

    def body(chunk):
      return jax.tree.map(lambda x: jnp.sum(x, axis=0), jax.vmap(fn)(chunk))

  total, _ = _scan_sum(lambda x, state: (body(x), state), xs, ())
  return jax.tree.map(lambda x: x / n, total)


def _scan_sum(
  body: Callable[[Any, Any], tuple[Any, Any]], xs: Any, state: Any
) -> tuple[Any, Any]:
  """``(sum over x of out_x, the last state)``, ``out_x, state = body(x, state)``
  along the leading axis of ``xs`` in one ``lax.scan``, holding only the running
  sum."""
  one = jax.tree.map(lambda x: x[0], xs)
  out_shape, _ = jax.eval_shape(body, one, state)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shape)

  def accumulate(carry, x):
    total, state = carry
    out, state = body(x, state)
    return (jax.tree.map(jnp.add, total, out), state), None

  (total, state), _ = lax.scan(accumulate, (zeros, state), xs)
  return total, state


def mean_over_tasks_in_order(
  fn: Callable[[Any, Any], tuple[Any, Any]], tasks: Any, state: Any
) -> tuple[Any, Any]:
  """``(mean over tasks of out_i, state_n)`` where ``out_i, state_i = fn(task_i,
  state_{i-1})`` and ``state_0 = state``: the tasks in batch order, one at a time.

  For a learner whose tasks share a state that each task updates, as the inner
  Adam state of Reptile's reference code passes from task to task.
  """
  total, state = _scan_sum(fn, tasks, state)
  return jax.tree.map(lambda x: x / _num_tasks(tasks), total), state
