"""Mixed precision: float32 params, lower-precision compute, float32 outputs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jmeta.models.base import Model, Params

COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')


def _check_dtype(dtype: Any) -> jnp.dtype:
  try:
    dtype = jnp.dtype(dtype)
  except TypeError as e:
    raise ValueError(
      f'compute_dtype must be a floating dtype such as jnp.bfloat16, got {dtype!r}.'
    ) from e
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
      f'compute_dtype must be a floating dtype such as jnp.bfloat16, got {dtype}.'
    )
  return dtype


def mixed_precision(model: Model, compute_dtype: Any = jnp.bfloat16) -> Model:
  """``model`` computing in ``compute_dtype`` while its params stay float32.

  ``apply(params, x)`` casts the floating params and inputs to ``compute_dtype``,
  runs ``model.apply`` and returns the outputs in float32 (Micikevicius et al.,
  2018): the meta-parameters, their gradients (the cast's transpose casts back),
  the optimizer state and the loss stay in float32. ``jmeta``'s batch norm
  computes its statistics in float32 whatever the compute dtype. ``init`` is
  ``model.init``. With ``compute_dtype=float32`` it computes what ``model`` does.

  Example::

    model = jmeta.models.mixed_precision(jmeta.conv4(5), jnp.bfloat16)
  """
  dtype = _check_dtype(compute_dtype)

  def cast(tree: Params) -> Params:
    return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
      tree,
    )

  def apply(params: Params, inputs: jax.Array, **kwargs) -> jax.Array:
    outputs = model.apply(cast(params), cast(jnp.asarray(inputs)), **kwargs)
    return outputs.astype(jnp.promote_types(outputs.dtype, jnp.float32))

  return Model(model.init, apply)
