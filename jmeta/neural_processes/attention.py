"""Multihead dot-product attention as pure functions (Vaswani et al., 2017).

The attentive neural process (Kim et al., 2019) lets each target input attend to
the context inputs, so its representation of the context depends on where it is
asked. Attention over a set is permutation equivariant in the keys and values
jointly (shuffling the context shuffles nothing a query sees), which keeps the
model's predictions invariant to the context's order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jmeta.validation import check_positive_int


def multihead_attention_init(
  key: jax.Array, query_size: int, key_size: int, value_size: int, num_heads: int
) -> dict[str, jax.Array]:
  """Projections of ``num_heads`` heads of width ``value_size // num_heads``.

  ``wq (heads, query_size, width)``, ``wk (heads, key_size, width)``, ``wv (heads,
  value_size, width)`` and ``wo (heads, width, value_size)``, normal with
  standard deviation fan_in^-1/2 (``value_size``'s for ``wo``, the concatenated
  heads') and no biases, as in DeepMind's ANP notebook.
  """
  num_heads = check_positive_int(num_heads, 'num_heads')
  if value_size % num_heads:
    raise ValueError(
      f'the value width {value_size} is not divisible by num_heads={num_heads}; '
      'each head takes an equal share of it. Choose num_heads dividing it.'
    )
  width = value_size // num_heads
  shapes = {
    'wq': (num_heads, query_size, width),
    'wk': (num_heads, key_size, width),
    'wv': (num_heads, value_size, width),
    'wo': (num_heads, width, value_size),
  }
  # Each projection's fan-in; the output's is the concatenated heads' (value_size).
  fan_in = {'wq': query_size, 'wk': key_size, 'wv': value_size, 'wo': value_size}
  keys = jax.random.split(key, len(shapes))
  return {
    name: jax.random.normal(k, shape, jnp.float32) * fan_in[name] ** -0.5
    for k, (name, shape) in zip(keys, shapes.items())
  }


def multihead_attention(
  params: dict[str, jax.Array],
  queries: jax.Array,
  keys: jax.Array,
  values: jax.Array,
) -> jax.Array:
  """sum_h softmax(Q_h K_h^T / sqrt(width)) V_h W_o,h: shape ``(queries, value_size)``.

  Q_h = queries W_q,h (and likewise K_h, V_h) for ``queries (m, query_size)``,
  ``keys (n, key_size)`` and ``values (n, value_size)``; summing the heads'
  projections is the concatenation of the heads times one output matrix.
  """
  q = jnp.einsum('md,hdw->hmw', queries, params['wq'])
  k = jnp.einsum('nd,hdw->hnw', keys, params['wk'])
  v = jnp.einsum('nd,hdw->hnw', values, params['wv'])
  logits = jnp.einsum('hmw,hnw->hmn', q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  heads = jnp.einsum('hmn,hnw->hmw', jax.nn.softmax(logits, axis=-1), v)
  return jnp.einsum('hmw,hwd->md', heads, params['wo'])


def self_attention_init(key: jax.Array, size: int, num_heads: int) -> dict:
  """Params of ``self_attention`` on features of width ``size``."""
  return {
    'attention': multihead_attention_init(key, size, size, size, num_heads),
    'scale': jnp.ones((size,), jnp.float32),
    'bias': jnp.zeros((size,), jnp.float32),
  }


def self_attention(params: dict, x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """LayerNorm(x + MultiHead(x, x, x)) over a set ``x (n, size)``.

  A Transformer encoder's attention sub-layer (residual, then layer norm); each
  element's feature now depends on the whole set, in an order-equivariant way.
  """
  h = x + multihead_attention(params['attention'], x, x, x)
  mean = jnp.mean(h, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
  return (h - mean) * jax.lax.rsqrt(var + eps) * params['scale'] + params['bias']
