"""Adapters that turn Flax Linen and NNX modules into a ``jmeta.Model``.

Algorithms never see a framework object: the adapters split the module into a
params pytree (a plain nested dict) and a pure ``apply`` at the boundary.

What the adapters do with the parts of a Flax model that are not pure functions of
the params:

- **Batch norm** always uses batch statistics, chosen by jmeta's named mode:
  ``transductive`` (each call's own batch) or ``support`` (the first ``num_support``
  examples, passed to Flax's ``BatchNorm`` as its ``mask``; what the metric learners
  use by default). Running averages are never read or kept, so a ``BatchNorm`` that
  would use them (``use_running_average=True``) is refused with an error.
- **Dropout and other random layers** get a fresh key on every call. ``apply`` is
  pure, so the key is a function of its arguments: by default it is derived from
  the adapter's ``seed``, the params and the inputs (a cheap hash of their bits,
  outside the gradient). Every inner-loop step (new params), task and meta-step
  (new inputs or params) therefore draws a new mask, while the same call repeated,
  such as the forward pass ``jax.grad`` differentiates, gives the same one. Pass
  ``key=`` to ``apply`` to choose the key yourself.
- **Call arguments** such as ``train`` are fixed when the adapter is built:
  ``from_linen(module, train=True)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx

from jmeta.models.base import (
  SUPPORT,
  TRANSDUCTIVE,
  Model,
  check_batch_norm_mode,
  check_num_support,
)

_USE_BATCH_STATISTICS = (
  'jmeta runs Flax batch norm on batch statistics only (batch_norm='
  "'transductive' or 'support'): running averages would stay at their initial "
  'values (mean 0, variance 1), since the adapters keep no state between calls.'
)
_SUPPORT_FIX = (
  "Pass batch_norm='transductive' to the learner (e.g. "
  "metric.prototypical(model, batch_norm='transductive')) or use a jmeta model "
  '(e.g. jmeta.conv4), which supports both modes.'
)


def _content_hash(tree: Any) -> jax.Array:
  """A uint32 that changes with any bit of ``tree``'s leaves (not a secure hash).

  Computed under ``stop_gradient``, so it adds nothing to a derivative; under
  ``jit`` it is dead code, and removed, when no random layer uses the key.
  """
  h = jnp.uint32(0x811C9DC5)
  for leaf in jax.tree.leaves(tree):
    x = jax.lax.stop_gradient(jnp.asarray(leaf)).astype(jnp.float32).ravel()
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    index = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9)
    mixed = (bits ^ index) * jnp.uint32(0x45D9F3B)
    mixed = mixed ^ (mixed >> jnp.uint32(16))
    h = (h ^ jnp.sum(mixed, dtype=jnp.uint32)) * jnp.uint32(0x01000193)
  return h


def _call_key(seed: int, params, inputs: jax.Array, key: jax.Array | None):
  """The key for the random layers of one call: ``key``, else derived (see module doc)."""
  if key is not None:
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.wrap_key_data(key)  # a raw jax.random.PRNGKey
    return key
  base = jax.random.fold_in(jax.random.key(seed), _content_hash(params))
  return jax.random.fold_in(base, _content_hash(inputs))


def _adapter_apply(forward):
  """An adapter's ``Model.apply``: checks the batch-norm keywords, then calls
  ``forward(params, inputs, support, key)``, ``support`` as ``_check_mode`` gives it."""

  def apply(
    params,
    inputs: jax.Array,
    *,
    batch_norm: str = TRANSDUCTIVE,
    num_support: int | None = None,
    key: jax.Array | None = None,
  ):
    support = _check_mode(batch_norm, num_support, inputs)
    return forward(params, inputs, support, key)

  return apply


def _check_mode(batch_norm: str, num_support: int | None, inputs) -> int | None:
  """The ``num_support`` for the batch-norm mask, or ``None`` in transductive mode."""
  check_batch_norm_mode(batch_norm)
  check_num_support(batch_norm, num_support, jnp.shape(inputs)[0])
  return num_support if batch_norm == SUPPORT else None


def _support_mask(
  shape: tuple[int, ...], feature_axes: Sequence[int], num_support: int
) -> jax.Array:
  """True on the first ``num_support`` examples, shaped to broadcast against ``shape``."""
  if 0 in feature_axes:
    raise ValueError(
      f'a Flax BatchNorm whose feature axes {tuple(feature_axes)} include the batch '
      "axis 0 cannot take statistics from the support examples (batch_norm='support'). "
      + _SUPPORT_FIX
    )
  return (jnp.arange(shape[0]) < num_support).reshape(
    (shape[0],) + (1,) * (len(shape) - 1)
  )


def _canonical_axes(ndim: int, axis) -> tuple[int, ...]:
  axes = (axis,) if isinstance(axis, int) else tuple(axis)
  return tuple(a % ndim for a in axes)


def _refuse_running_average(where: str, fix: str) -> None:
  raise ValueError(
    f'{where} uses running averages (use_running_average=True). '
    f'{_USE_BATCH_STATISTICS} {fix}'
  )


def _check_call_arguments(
  adapter: str, call: Callable, call_kwargs: dict[str, Any], example: str
) -> None:
  """Raises if ``call(inputs, **call_kwargs)`` would miss a required argument."""
  try:
    signature = inspect.signature(call)
  except (TypeError, ValueError):  # builtins or C callables: nothing to check
    return
  params = list(signature.parameters.values())
  if params and params[0].name == 'self':
    params = params[1:]
  kinds = {p.kind for p in params}
  if inspect.Parameter.VAR_KEYWORD not in kinds:
    names = {p.name for p in params if p.kind != inspect.Parameter.VAR_POSITIONAL}
    unknown = sorted(set(call_kwargs) - names)
    if unknown:
      raise TypeError(
        f"{adapter}: the module's __call__{signature} takes no argument(s) "
        f'{unknown}; pass only its own arguments, e.g. {example}.'
      )
  if inspect.Parameter.VAR_POSITIONAL in kinds:
    return
  required = [
    p.name
    for p in params[1:]  # params[0] receives the inputs
    if p.default is inspect.Parameter.empty
    and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    and p.name not in call_kwargs
  ]
  if required:
    raise TypeError(
      f"{adapter}: the module's __call__{signature} needs {required} besides the "
      f'inputs; pass them when building the adapter, e.g. {example}; every call '
      'of the module gets them.'
    )


# --- Linen -------------------------------------------------------------------------


def _linen_batch_norm_interceptor(num_support: int | None):
  """Refuses running averages; adds the support mask in ``support`` mode."""

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if not (isinstance(module, linen.BatchNorm) and context.method_name == '__call__'):
      return next_fun(*args, **kwargs)
    call_value = kwargs.get('use_running_average', args[1] if len(args) > 1 else None)
    if module.use_running_average or call_value:
      _refuse_running_average(
        f'linen BatchNorm {module.name!r}',
        'Construct it with use_running_average=False, or pass the call argument '
        'that selects batch statistics when building the adapter (e.g. '
        'jmeta.from_linen(module, train=True)).',
      )
    if num_support is not None:
      x = args[0]
      mask = _support_mask(x.shape, _canonical_axes(x.ndim, module.axis), num_support)
      if kwargs.get('mask') is not None:
        mask = jnp.logical_and(kwargs['mask'], mask)
      kwargs = {**kwargs, 'mask': mask}
    return next_fun(*args, **kwargs)

  return interceptor


def _check_linen_module(module) -> None:
  if isinstance(module, type) and issubclass(module, linen.Module):
    raise TypeError(
      f'jmeta.from_linen expects a linen module instance, got the class '
      f'{module.__name__}; construct it first: jmeta.from_linen({module.__name__}(...)).'
    )
  if isinstance(module, nnx.Module) or (
    isinstance(module, type) and issubclass(module, nnx.Module)
  ):
    raise TypeError(
      'jmeta.from_linen got an NNX module; use jmeta.from_nnx(lambda rngs: '
      'MyModule(..., rngs=rngs)) for flax.nnx modules.'
    )
  if not isinstance(module, linen.Module):
    raise TypeError(
      f'jmeta.from_linen expects a flax.linen.Module instance, got '
      f'{type(module).__name__}.'
    )


def from_linen(
  module: linen.Module,
  *,
  mutable: Sequence[str] = ('batch_stats',),
  rng_streams: Sequence[str] = ('dropout',),
  seed: int = 0,
  **call_kwargs: Any,
) -> Model:
  """Wraps a ``flax.linen`` module instance; params are ``variables['params']``.

  Args:
    module: a linen module instance (not the class).
    mutable: collections the module writes during a call (batch statistics). They
      are created fresh on every call and their updated values are discarded, so no
      state is hidden.
    rng_streams: the RNG streams the module asks for with ``make_rng`` (Dropout's
      ``'dropout'``). Each call gets fresh keys for them (see the module docstring);
      ``apply(..., key=k)`` sets them explicitly.
    seed: the seed the per-call keys are derived from.
    **call_kwargs: arguments of the module's ``__call__`` besides the inputs, passed
      to ``init`` and every ``apply``, e.g. ``from_linen(module, train=True)``.

  Batch norm runs on batch statistics, in jmeta's ``transductive`` or ``support``
  mode (Flax's ``BatchNorm`` ``mask`` selects the support examples). A ``BatchNorm``
  with ``use_running_average=True`` is refused when the model is first initialised
  or applied.
  """
  _check_linen_module(module)
  _check_call_arguments(
    'jmeta.from_linen',
    type(module).__call__,
    call_kwargs,
    f'jmeta.from_linen({type(module).__name__}(...), train=True)',
  )
  mutable = list(mutable)
  rng_streams = tuple(rng_streams)

  def stream_keys(key: jax.Array) -> dict[str, jax.Array]:
    keys = jax.random.split(key, len(rng_streams)) if rng_streams else []
    return dict(zip(rng_streams, keys))

  def init(key: jax.Array, example_inputs: jax.Array):
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.wrap_key_data(key)
    streams = stream_keys(jax.random.fold_in(key, 1))
    with linen.intercept_methods(_linen_batch_norm_interceptor(None)):
      variables = module.init({'params': key, **streams}, example_inputs, **call_kwargs)
    return variables['params']

  def forward(params, inputs: jax.Array, support: int | None, key: jax.Array | None):
    rngs = stream_keys(_call_key(seed, params, inputs, key)) if rng_streams else None
    with linen.intercept_methods(_linen_batch_norm_interceptor(support)):
      # Flax returns (outputs, state) for any mutable other than False, even [].
      out = module.apply(
        {'params': params},
        inputs,
        mutable=mutable or False,
        rngs=rngs,
        **call_kwargs,
      )
    return out[0] if mutable else out

  return Model(init, _adapter_apply(forward))


# --- NNX ---------------------------------------------------------------------------

# The support-set size of the call being traced, read by _BatchStatisticsBatchNorm.
_NNX_NUM_SUPPORT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
  'jmeta_nnx_num_support', default=None
)


@contextlib.contextmanager
def _nnx_num_support(num_support: int | None) -> Iterator[None]:
  token = _NNX_NUM_SUPPORT.set(num_support)
  try:
    yield
  finally:
    _NNX_NUM_SUPPORT.reset(token)


class _BatchStatisticsBatchNorm(nnx.BatchNorm):
  """``nnx.BatchNorm`` as the adapter runs it: batch statistics, support mask.

  ``from_nnx`` gives its own copy of the module's ``nnx.BatchNorm`` layers this
  class (same attributes and variables), so their calls can be checked and masked;
  the user's module is not changed.
  """

  def __call__(self, x, use_running_average=None, *, mask=None):
    if use_running_average is None:
      use_running_average = self.use_running_average
    if use_running_average:
      _refuse_running_average(
        'an nnx.BatchNorm',
        'Construct it with use_running_average=False (and do not pass '
        'use_running_average=True to its call).',
      )
    num_support = _NNX_NUM_SUPPORT.get()
    if num_support is not None:
      support = _support_mask(x.shape, _canonical_axes(x.ndim, self.axis), num_support)
      mask = support if mask is None else jnp.logical_and(mask, support)
    return super().__call__(x, use_running_average=False, mask=mask)


def _nnx_batch_norms(module: nnx.Module) -> list[tuple[Any, nnx.BatchNorm]]:
  return [
    (path, node)
    for path, node in nnx.iter_graph(module)
    if isinstance(node, nnx.BatchNorm)
  ]


def _build_nnx(module_fn, rngs: nnx.Rngs) -> nnx.Module:
  if isinstance(module_fn, nnx.Module):
    raise TypeError(
      f'jmeta.from_nnx expects a function that builds the module from rngs, got '
      f'an instance of {type(module_fn).__name__}; pass the constructor instead: '
      f'jmeta.from_nnx(lambda rngs: {type(module_fn).__name__}(..., rngs=rngs)) '
      '(init(key) builds a new module from each key).'
    )
  if isinstance(module_fn, linen.Module) or (
    isinstance(module_fn, type) and issubclass(module_fn, linen.Module)
  ):
    raise TypeError(
      'jmeta.from_nnx got a linen module; use jmeta.from_linen(MyModule(...)) for '
      'flax.linen modules.'
    )
  if not callable(module_fn):
    raise TypeError(
      f'jmeta.from_nnx expects a function rngs -> nnx.Module, got '
      f'{type(module_fn).__name__}.'
    )
  name = getattr(module_fn, '__name__', type(module_fn).__name__)
  try:
    module = module_fn(rngs)
  except TypeError as e:
    raise TypeError(
      f'jmeta.from_nnx calls module_fn(rngs) with one nnx.Rngs argument, and '
      f'{name}(rngs) failed: {e}. Pass a function that fills in the other '
      f'arguments, e.g. jmeta.from_nnx(lambda rngs: {name}(..., rngs=rngs)).'
    ) from e
  if not isinstance(module, nnx.Module):
    raise TypeError(
      f'jmeta.from_nnx: module_fn(rngs) must return an nnx.Module, got '
      f'{type(module).__name__}.'
    )
  return module


def from_nnx(
  module_fn: Callable[[nnx.Rngs], nnx.Module], *, seed: int = 0, **call_kwargs: Any
) -> Model:
  """Wraps a ``flax.nnx`` module built by ``module_fn(rngs)``.

  Args:
    module_fn: builds the module from an ``nnx.Rngs``: a class whose constructor
      takes only ``rngs``, or e.g. ``lambda rngs: nnx.Linear(1, 1, rngs=rngs)``. Not a
      module instance: ``init(key, x)`` builds a new module from each key.
    seed: the seed the per-call keys of random layers (``nnx.Dropout``) are derived
      from (see the module docstring); ``apply(..., key=k)`` sets them explicitly.
    **call_kwargs: arguments of the module's ``__call__`` besides the inputs, passed
      to every ``apply``.

  ``init(key, x)`` builds the module with ``nnx.Rngs(key)`` and returns its
  ``nnx.Param`` leaves as a pure dict. Other state is taken from a module built once
  here: batch statistics are never read (batch norm runs on batch statistics, in
  the ``transductive`` or ``support`` mode; ``use_running_average=True`` is refused),
  and every RNG stream (e.g. a Dropout's) is given a fresh key on each call.
  Subclasses of ``nnx.BatchNorm`` run in ``transductive`` mode only.
  """
  template = _build_nnx(module_fn, nnx.Rngs(0))
  _check_call_arguments(
    'jmeta.from_nnx',
    type(template).__call__,
    call_kwargs,
    'jmeta.from_nnx(module_fn, train=True)',
  )
  custom_batch_norms = []
  for path, bn in _nnx_batch_norms(template):
    if bn.use_running_average:
      _refuse_running_average(
        f'nnx.BatchNorm at {"/".join(map(str, path)) or "the top"}',
        'Construct it with use_running_average=False.',
      )
    if type(bn) is nnx.BatchNorm:
      object.__setattr__(bn, '__class__', _BatchStatisticsBatchNorm)  # private copy
    else:
      custom_batch_norms.append(type(bn).__name__)
  graphdef, params_template, rng_key_template, rest_template = nnx.split(
    template, nnx.Param, nnx.RngKey, ...
  )
  rest_values = nnx.to_pure_dict(rest_template)
  num_rng_keys = len(jax.tree.leaves(rng_key_template))

  def init(key: jax.Array, example_inputs: jax.Array):
    del example_inputs  # NNX modules are shaped by their constructor
    _, params, _ = nnx.split(_build_nnx(module_fn, nnx.Rngs(key)), nnx.Param, ...)
    return nnx.to_pure_dict(params)

  def forward(params, inputs: jax.Array, support: int | None, key: jax.Array | None):
    if support is not None and custom_batch_norms:
      raise ValueError(
        f"batch_norm='support' needs nnx.BatchNorm itself; this model's batch norm "
        f'is a subclass ({", ".join(sorted(set(custom_batch_norms)))}), which '
        f'jmeta runs in transductive mode only. {_SUPPORT_FIX}'
      )
    # Fresh Variables per call: NNX forbids mutating a Variable from another trace.
    param_state = jax.tree.map(lambda v: v, params_template)
    nnx.replace_by_pure_dict(param_state, params)
    rest_state = jax.tree.map(lambda v: v, rest_template)
    nnx.replace_by_pure_dict(rest_state, rest_values)
    # Every RNG stream starts from a fresh key (and its template count, 0).
    treedef = jax.tree.structure(rng_key_template)
    keys = []
    if num_rng_keys:
      keys = jax.random.split(_call_key(seed, params, inputs, key), num_rng_keys)
    rng_state = jax.tree.unflatten(treedef, list(keys))
    with _nnx_num_support(support):
      return nnx.merge(graphdef, param_state, rng_state, rest_state)(
        inputs, **call_kwargs
      )

  return Model(init, _adapter_apply(forward))
