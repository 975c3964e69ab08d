"""Least Recently Used Access (LRUA) memory (Santoro et al., 2016, Sec. 3.2).

A content-based memory for one-shot learning: heads read where the key matches and
write either where they just read (to update a memory) or to the least-used slots
(to store something new). With ``H`` heads, one step is

* ``w^lu_{t-1}``: 1 on the ``H`` slots of smallest usage ``w^u_{t-1}``, else 0;
* ``w^w_t = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}`` per head;
* the single least-used slot of ``w^u_{t-1}`` is set to zero, then
  ``M_t = M_{t-1} + sum_heads w^w_t v_t^T``, where ``v_t`` is the key ``k_t``;
* ``w^r_t = softmax(K(k_t, M_t))`` (cosine, no key strength) and ``r_t = w^r_t M_t``;
* ``w^u_t = gamma w^u_{t-1} + sum_heads (w^r_t + w^w_t)``.

Choices where the paper is not explicit (with what reference code does):

* ``w^lu`` has exactly ``H`` ones, ties going to the lower slot index (``top_k``).
  The paper's "w^u <= the H-th smallest usage" can mark more than ``H`` slots on
  ties. All heads share the one ``w^lu``, as the paper's notation has it and
  snowkylin/ntm does; tristandeleu/ntm-one-shot instead sends head h to the h-th
  least-used slot alone.
* Only the one least-used slot (argmin of ``w^u_{t-1}``, lowest index on ties) is
  zeroed, as in both reference implementations and the paper's singular "the least
  used memory location".
* The write uses ``w^r_{t-1}`` and ``w^lu_{t-1}`` and the read uses the written
  memory ``M_t``, as in the paper's equations and tristandeleu/ntm-one-shot.
* The written vector defaults to the read key ``k_t`` (the paper); the reference
  implementations write a separate add vector, which ``update`` takes as ``values``.
* Before the episode the memory is zero and every head's previous read weights and
  the usage are one-hot on slot 0 (the references start the memory at 1e-6
  instead of 0; the cosine's epsilon makes a zero row safe here).
* ``alpha`` is emitted by the controller per head and step, as in the references.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jmeta.memory.access import (
  MemoryAccess,
  check_gamma,
  check_head_outputs,
  check_heads_fit,
  check_memory_sizes,
)
from jmeta.memory.addressing import content_weights
from jmeta.validation import check_positive_int


class LRUAState(NamedTuple):
  """The LRUA memory between steps.

  Attributes:
    memory: ``M_t``, shape ``(slots, width)``.
    usage: ``w^u_t``, shape ``(slots,)``.
    read_weights: ``w^r_t`` of each head, shape ``(heads, slots)``.
    write_weights: ``w^w_t`` of each head, shape ``(heads, slots)``.
  """

  memory: jax.Array
  usage: jax.Array
  read_weights: jax.Array
  write_weights: jax.Array


def least_used_weights(usage: jax.Array, n: int) -> jax.Array:
  """``w^lu``: 1 on the ``n`` slots of smallest usage (lower index on ties), else 0."""
  _, slots = lax.top_k(-usage, n)
  return jnp.sum(jax.nn.one_hot(slots, usage.shape[-1], dtype=usage.dtype), axis=0)


def lrua_write_weights(
  alpha: jax.Array, previous_read: jax.Array, least_used: jax.Array
) -> jax.Array:
  """``w^w = sigma(alpha) w^r_{t-1} + (1 - sigma(alpha)) w^lu_{t-1}`` for each head.

  ``alpha`` is ``(heads,)``, ``previous_read`` ``(heads, slots)`` and
  ``least_used`` ``(slots,)``; returns ``(heads, slots)``.
  """
  gate = jax.nn.sigmoid(alpha)[:, None]
  return gate * previous_read + (1 - gate) * least_used


def zero_least_used(memory: jax.Array, usage: jax.Array) -> jax.Array:
  """``memory`` with the row of smallest ``usage`` (lowest index on ties) set to 0."""
  keep = 1 - jax.nn.one_hot(jnp.argmin(usage), usage.shape[-1], dtype=memory.dtype)
  return memory * keep[:, None]


def lrua(
  memory_slots: int, memory_width: int, heads: int = 4, gamma: float = 0.95
) -> MemoryAccess:
  """An LRUA memory of ``memory_slots x memory_width`` with ``heads`` read heads.

  ``update(state, keys, alpha, values=None) -> (reads, state)`` takes the keys
  ``(heads, width)``, the gate logits ``alpha`` ``(heads,)`` and the written vectors
  ``values`` ``(heads, width)`` (the keys if None, as in the paper); ``reads`` is
  ``(heads, width)``. Santoro et al. use 128 x 40, 4 heads and gamma 0.95 on
  Omniglot. See the module docstring for the equations.

  Example::

    access = lrua(128, 40)
    reads, state = access.update(access.init(), keys, alpha)
  """
  slots, width = check_memory_sizes(memory_slots, memory_width)
  heads = check_positive_int(heads, 'heads')
  check_heads_fit(heads, slots, 'heads')
  gamma = check_gamma(gamma)

  def init(dtype=jnp.float32) -> LRUAState:
    first = jax.nn.one_hot(0, slots, dtype=dtype)
    return LRUAState(
      memory=jnp.zeros((slots, width), dtype),
      usage=first,
      read_weights=jnp.tile(first, (heads, 1)),
      write_weights=jnp.zeros((heads, slots), dtype),
    )

  def update(
    state: LRUAState,
    keys: jax.Array,
    alpha: jax.Array,
    values: jax.Array | None = None,
  ) -> tuple[jax.Array, LRUAState]:
    values = keys if values is None else values
    check_head_outputs('keys', keys, (heads, width))
    check_head_outputs('alpha', alpha, (heads,))
    check_head_outputs('values', values, (heads, width))
    least_used = least_used_weights(state.usage, heads)
    write_weights = lrua_write_weights(alpha, state.read_weights, least_used)
    memory = zero_least_used(state.memory, state.usage) + write_weights.T @ values
    read_weights = jax.vmap(content_weights, (None, 0, None))(memory, keys, 1.0)
    usage = gamma * state.usage + read_weights.sum(axis=0) + write_weights.sum(axis=0)
    reads = read_weights @ memory
    return reads, LRUAState(memory, usage, read_weights, write_weights)

  return MemoryAccess(init, update)
