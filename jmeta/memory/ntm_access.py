"""Neural Turing Machine memory with read and write heads (Graves et al., 2014, Sec. 3).

Every head focuses by content and by location (``addressing.address``); the write
heads erase and add (``addressing.write_heads``), the read heads read. One step:

* each write head addresses ``M_{t-1}`` from its previous weights, then all write
  heads write, giving ``M_t``;
* each read head addresses ``M_t`` from its previous weights and reads it.

The paper leaves the order of reads and writes within a step open; writing first
lets a step's output read what that step stored, as in the Differentiable Neural
Computer (Graves et al., 2016) and in the LRUA memory of ``jmeta.memory.lrua``.
Before the episode the memory is zero and every head's previous weights are
one-hot on slot 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jmeta.memory import addressing
from jmeta.memory.access import MemoryAccess, check_head_outputs, check_memory_sizes
from jmeta.memory.addressing import address, check_shift_width
from jmeta.validation import check_positive_int


class NTMState(NamedTuple):
  """The NTM memory between steps.

  Attributes:
    memory: ``M_t``, shape ``(slots, width)``.
    read_weights: ``(read_heads, slots)``.
    write_weights: ``(write_heads, slots)``.
  """

  memory: jax.Array
  read_weights: jax.Array
  write_weights: jax.Array


class NTMHeads(NamedTuple):
  """The addressing outputs of a group of heads, each with a leading heads axis.

  Attributes:
    key: ``k``, ``(heads, width)``.
    strength: ``beta >= 0``, ``(heads,)``.
    gate: ``g`` in [0, 1], ``(heads,)``.
    shift: ``s``, a distribution over offsets ``-k..k``, ``(heads, 2k + 1)``.
    sharpen: ``gamma >= 1``, ``(heads,)``.
  """

  key: jax.Array
  strength: jax.Array
  gate: jax.Array
  shift: jax.Array
  sharpen: jax.Array


def address_heads(memory: jax.Array, previous: jax.Array, heads: NTMHeads) -> jax.Array:
  """``address`` for every head: ``(heads, slots)`` weights."""
  return jax.vmap(address, (None, 0, 0, 0, 0, 0, 0))(memory, previous, *heads)


def ntm_access(
  memory_slots: int,
  memory_width: int,
  read_heads: int = 1,
  write_heads: int = 1,
  shift_width: int = 3,
) -> MemoryAccess:
  """An NTM memory of ``memory_slots x memory_width`` with its read and write heads.

  ``update(state, read: NTMHeads, write: NTMHeads, erase, add) -> (reads, state)``
  with ``erase`` (entries in [0, 1]) and ``add`` of shape ``(write_heads, width)``;
  ``reads`` is ``(read_heads, width)``. ``shift_width`` is the odd number of
  shift offsets (3: -1, 0, +1, as in the paper's experiments).
  """
  slots, width = check_memory_sizes(memory_slots, memory_width)
  n_read = check_positive_int(read_heads, 'read_heads')
  n_write = check_positive_int(write_heads, 'write_heads')
  shift_width = check_positive_int(shift_width, 'shift_width')
  check_shift_width(shift_width, 'shift_width')
  if shift_width > slots:
    raise ValueError(
      f'shift_width={shift_width} exceeds memory_slots={slots}: offsets would wrap '
      'around the memory more than once; use at most memory_slots offsets.'
    )

  def check_heads(name: str, heads: NTMHeads, count: int) -> None:
    for field, shape in zip(
      NTMHeads._fields, ((count, width), (count,), (count,), (count, shift_width))
    ):
      check_head_outputs(f'{name}.{field}', getattr(heads, field), shape)
    check_head_outputs(f'{name}.sharpen', heads.sharpen, (count,))

  def init(dtype=jnp.float32) -> NTMState:
    first = jax.nn.one_hot(0, slots, dtype=dtype)
    return NTMState(
      memory=jnp.zeros((slots, width), dtype),
      read_weights=jnp.tile(first, (n_read, 1)),
      write_weights=jnp.tile(first, (n_write, 1)),
    )

  def update(
    state: NTMState,
    read: NTMHeads,
    write: NTMHeads,
    erase: jax.Array,
    add: jax.Array,
  ) -> tuple[jax.Array, NTMState]:
    check_heads('read', read, n_read)
    check_heads('write', write, n_write)
    check_head_outputs('erase', erase, (n_write, width))
    check_head_outputs('add', add, (n_write, width))
    write_weights = address_heads(state.memory, state.write_weights, write)
    # write_heads (the int) shadows the function here, hence the module prefix.
    memory = addressing.write_heads(state.memory, write_weights, erase, add)
    read_weights = address_heads(memory, state.read_weights, read)
    reads = read_weights @ memory
    return reads, NTMState(memory, read_weights, write_weights)

  return MemoryAccess(init, update)
