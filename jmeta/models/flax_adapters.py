"""Adapters that turn Flax Linen and NNX modules into a ``jmeta.Model``.

Algorithms never see a framework object: the adapters split the module into a
params pytree (a plain nested dict) and a pure ``apply`` at the boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import linen, nnx

from jmeta.models.base import TRANSDUCTIVE, Model, check_batch_norm_mode


def _check_transductive(batch_norm: str, num_support: int | None) -> None:
  check_batch_norm_mode(batch_norm)
  if batch_norm != TRANSDUCTIVE or num_support is not None:
    raise ValueError(
      f'Flax modules wrapped by jmeta run batch norm on batch statistics only '
      f"(batch_norm='transductive'); got batch_norm={batch_norm!r}, "
      f'num_support={num_support!r}. Use a jmeta model (e.g. jmeta.conv4) for '
      "batch_norm='support'."
    )


def from_linen(
  module: linen.Module, *, mutable: Sequence[str] = ('batch_stats',)
) -> Model:
  """Wraps a ``flax.linen`` module; params are ``variables['params']``.

  Batch norm must run on batch statistics (``use_running_average=False``), which is
  jmeta's ``transductive`` mode: collections named in ``mutable`` are created fresh on
  every call and their updated values are discarded, so no state is hidden.
  """
  mutable = list(mutable)

  def init(key: jax.Array, example_inputs: jax.Array):
    return module.init(key, example_inputs)['params']

  def apply(
    params,
    inputs: jax.Array,
    *,
    batch_norm: str = TRANSDUCTIVE,
    num_support: int | None = None,
  ):
    _check_transductive(batch_norm, num_support)
    # Flax returns (outputs, state) for any mutable other than False, even [].
    out = module.apply({'params': params}, inputs, mutable=mutable or False)
    return out[0] if mutable else out

  return Model(init, apply)


def from_nnx(module_fn: Callable[[nnx.Rngs], nnx.Module]) -> Model:
  """Wraps a ``flax.nnx`` module built by ``module_fn(rngs)``.

  ``init(key, x)`` builds the module with ``nnx.Rngs(key)`` and returns its
  ``nnx.Param`` leaves as a pure dict. Non-parameter state (batch statistics, RNG
  counters) is taken from a module built once here and never updated, so batch norm
  must use batch statistics (``use_running_average=False``): the ``transductive``
  mode.

  Example: ``from_nnx(lambda rngs: nnx.Linear(1, 1, rngs=rngs))``.
  """
  graphdef, params_template, rest_template = nnx.split(
    module_fn(nnx.Rngs(0)), nnx.Param, ...
  )
  rest_values = nnx.to_pure_dict(rest_template)

  def init(key: jax.Array, example_inputs: jax.Array):
    del example_inputs  # NNX modules are shaped by their constructor
    _, params, _ = nnx.split(module_fn(nnx.Rngs(key)), nnx.Param, ...)
    return nnx.to_pure_dict(params)

  def apply(
    params,
    inputs: jax.Array,
    *,
    batch_norm: str = TRANSDUCTIVE,
    num_support: int | None = None,
  ):
    _check_transductive(batch_norm, num_support)
    # Fresh Variables per call: NNX forbids mutating a Variable from another trace.
    param_state = jax.tree.map(lambda v: v, params_template)
    nnx.replace_by_pure_dict(param_state, params)
    rest_state = jax.tree.map(lambda v: v, rest_template)
    nnx.replace_by_pure_dict(rest_state, rest_values)
    return nnx.merge(graphdef, param_state, rest_state)(inputs)

  return Model(init, apply)
