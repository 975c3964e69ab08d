"""Neural Turing Machine addressing, reading and writing (Graves et al., 2014, Sec. 3).

Each function acts on one head and one memory ``M`` of shape ``(slots N, width W)``;
``jax.vmap`` it for several heads or a batch. A weighting ``w`` is a vector of
``N`` non-negative numbers summing to one. The NTM pipeline of Fig. 2 is
``address``: content focus, interpolation, circular shift, sharpening.

Shape checks read static shapes only, so they run once at trace time and cost
nothing compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Added under the squared norms of the cosine: a zero memory row (or key) then has
# similarity 0 with everything and a finite gradient, where u.v / (|u| |v|) is
# 0 / 0. Small enough to leave the similarity of rows of norm >> 1e-4 unchanged.
COSINE_EPS = 1e-8


def check_memory(memory: jax.Array, what: str = 'memory') -> None:
  if np.ndim(memory) != 2:
    raise ValueError(
      f'{what} must be one memory matrix of shape (slots, width), got shape '
      f'{np.shape(memory)}; jax.vmap over any batch axis.'
    )


def check_weights(memory: jax.Array, weights: jax.Array, what: str) -> None:
  if np.shape(weights) != np.shape(memory)[:1]:
    raise ValueError(
      f'{what} must be one weighting of shape (slots,) = {np.shape(memory)[:1]}, '
      f'got shape {np.shape(weights)}; jax.vmap over heads.'
    )


def check_vector(memory: jax.Array, vector: jax.Array, what: str) -> None:
  if np.shape(vector) != np.shape(memory)[1:]:
    raise ValueError(
      f'{what} must have shape (width,) = {np.shape(memory)[1:]} to match the '
      f'memory, got shape {np.shape(vector)}.'
    )


def cosine_similarity(
  memory: jax.Array, key: jax.Array, eps: float = COSINE_EPS
) -> jax.Array:
  """``K(k, M_i) = k . M_i / (||k|| ||M_i||)`` for every row i (Graves et al., eq. 6).

  Each norm is computed as ``sqrt(||v||^2 + eps)`` so that a zero row gives 0, not
  NaN, in the value and in the gradient.
  """
  check_memory(memory)
  check_vector(memory, key, 'key')
  unit_rows = memory * jax.lax.rsqrt(
    jnp.sum(jnp.square(memory), axis=-1, keepdims=True) + eps
  )
  unit_key = key * jax.lax.rsqrt(jnp.sum(jnp.square(key)) + eps)
  return unit_rows @ unit_key


def content_weights(
  memory: jax.Array,
  key: jax.Array,
  strength: jax.Array | float,
  eps: float = COSINE_EPS,
) -> jax.Array:
  """Content focus ``w^c_i = softmax_i(beta K(k, M_i))`` (Graves et al., eq. 5).

  ``strength`` is the key strength beta >= 0; beta = 1 gives the read weights of
  Santoro et al. (2016, eq. 18).
  """
  return jax.nn.softmax(strength * cosine_similarity(memory, key, eps))


def interpolate(
  content: jax.Array, previous: jax.Array, gate: jax.Array | float
) -> jax.Array:
  """``w^g = g w^c + (1 - g) w_{t-1}`` for a gate g in [0, 1] (Graves et al., eq. 7)."""
  if np.shape(content) != np.shape(previous):
    raise ValueError(
      f'the content weights {np.shape(content)} and the previous weights '
      f'{np.shape(previous)} must have the same shape (slots,).'
    )
  return gate * content + (1 - gate) * previous


def check_shift_width(width: int, what: str = 'the shift distribution') -> None:
  if width < 1 or width % 2 == 0:
    raise ValueError(
      f'{what} must have an odd number of entries (offsets -k..k around 0, e.g. 3 '
      f'for -1, 0, +1), got {width}.'
    )


def shift(weights: jax.Array, shift_weights: jax.Array) -> jax.Array:
  """Circular convolution ``w~_i = sum_j w_j s_{i - j}`` (Graves et al., eq. 8).

  ``shift_weights`` has an odd length ``2k + 1``; entry ``j`` is the weight of
  offset ``j - k`` (so ``[s_-1, s_0, s_+1]`` for width 3), and offset ``+1`` moves
  the focus from slot ``i`` to slot ``i + 1`` (mod N). A sum of ``2k + 1`` rolls,
  cheaper than an N x N circulant matrix for the narrow shifts NTMs use.
  """
  if np.ndim(weights) != 1 or np.ndim(shift_weights) != 1:
    raise ValueError(
      f'shift takes one weighting (slots,) and one shift distribution (offsets,), '
      f'got shapes {np.shape(weights)} and {np.shape(shift_weights)}; '
      'jax.vmap over heads.'
    )
  width = np.shape(shift_weights)[0]
  check_shift_width(width)
  half = width // 2
  return sum(shift_weights[j] * jnp.roll(weights, j - half) for j in range(width))


def sharpen(weights: jax.Array, exponent: jax.Array | float) -> jax.Array:
  """``w_i = w~_i^gamma / sum_j w~_j^gamma`` for gamma >= 1 (Graves et al., eq. 9).

  Computed as ``softmax(gamma log w~)``: the max-subtraction of the softmax keeps
  the ratio finite when every ``w~^gamma`` underflows, and ``w~`` is clamped to the
  smallest normal float before the log, so a zero weight (whose log is -inf) gives a
  weight of about 1e-38 gamma-th power instead of a NaN gradient with respect to
  gamma.
  """
  tiny = jnp.finfo(jnp.result_type(weights)).tiny
  return jax.nn.softmax(exponent * jnp.log(jnp.maximum(weights, tiny)))


def address(
  memory: jax.Array,
  previous: jax.Array,
  key: jax.Array,
  strength: jax.Array | float,
  gate: jax.Array | float,
  shift_weights: jax.Array,
  exponent: jax.Array | float,
) -> jax.Array:
  """The NTM weighting of one head: content, interpolation, shift, sharpening.

  ``sharpen(shift(interpolate(content_weights(M, k, beta), w_{t-1}, g), s), gamma)``
  (Graves et al., 2014, Fig. 2).
  """
  check_weights(memory, previous, 'the previous weights')
  focused = interpolate(content_weights(memory, key, strength), previous, gate)
  return sharpen(shift(focused, shift_weights), exponent)


def read(memory: jax.Array, weights: jax.Array) -> jax.Array:
  """The read vector ``r = sum_i w_i M_i = w^T M`` (Graves et al., eq. 2)."""
  check_memory(memory)
  check_weights(memory, weights, 'the read weights')
  return weights @ memory


def write(
  memory: jax.Array, weights: jax.Array, erase: jax.Array, add: jax.Array
) -> jax.Array:
  """Erase then add: ``M <- M * (1 - w e^T) + w a^T`` (Graves et al., eqs. 3-4).

  ``erase`` has entries in [0, 1]; ``add`` is any vector of the memory's width.
  """
  check_memory(memory)
  check_weights(memory, weights, 'the write weights')
  check_vector(memory, erase, 'the erase vector')
  check_vector(memory, add, 'the add vector')
  return memory * (1 - jnp.outer(weights, erase)) + jnp.outer(weights, add)


def write_heads(
  memory: jax.Array, weights: jax.Array, erase: jax.Array, add: jax.Array
) -> jax.Array:
  """Several write heads: every erasure, then every addition (Graves et al., Sec. 3.2).

  ``M <- M * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T`` for weights ``(heads,
  slots)`` and erase and add vectors ``(heads, width)``. Products and sums commute,
  so the order of the heads does not matter, as the paper notes; with one head this
  is ``write``.
  """
  check_memory(memory)
  slots, width = np.shape(memory)
  heads = np.shape(weights)[0] if np.ndim(weights) == 2 else -1
  if (np.shape(weights), np.shape(erase), np.shape(add)) != (
    (heads, slots),
    (heads, width),
    (heads, width),
  ):
    raise ValueError(
      f'write_heads takes weights (heads, slots) and erase and add vectors (heads, '
      f'width) for a memory {np.shape(memory)}; got {np.shape(weights)}, '
      f'{np.shape(erase)} and {np.shape(add)}.'
    )
  keep = jnp.prod(1 - weights[:, :, None] * erase[:, None, :], axis=0)
  return memory * keep + weights.T @ add
