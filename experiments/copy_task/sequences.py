"""Copy-task sequences (Graves et al., 2014, Sec. 4.1) and their cost in bits.

A sequence of ``length`` random binary vectors of ``bits`` bits is shown to the
model, framed by two flags, each on a channel of its own; then the model sees blank
steps while it must emit the sequence. With ``bits + 2`` input channels and
``L = length``, the steps are:

* step 0: the start flag (channel ``bits``);
* steps 1..L: the vectors (channels ``0..bits-1``);
* step L + 1: the end flag, the delimiter (channel ``bits + 1``);
* steps L + 2..2L + 1: blank inputs; the targets are the vectors in order and the
  mask is 1 (the output phase);
* steps 2L + 2 onwards: padding, all zero, mask 0.

Every sequence of a batch is padded at the end to ``time_steps(max_length) = 2 *
max_length + 2`` steps, so one jitted, vmapped step serves every mix of lengths.
A recurrent model is causal, so the padding after a sequence cannot change its
outputs before it, and the mask drops the padding from the cost: the cost of a
padded sequence equals the cost of the same sequence run unpadded.

The cost per sequence is the binary cross-entropy of the sigmoid outputs summed
over the output phase's steps and bits, in bits (nats / ln 2): the "cost per
sequence (bits)" of the paper's Figure 3.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jmeta.validation import check_positive_int


class CopyBatch(NamedTuple):
  """A batch of copy-task sequences, padded to one number of steps ``time``.

  Attributes:
    inputs: ``(batch, time, bits + 2)``, 0/1.
    targets: ``(batch, time, bits)``, the vectors in the output phase, else 0.
    mask: ``(batch, time)``, 1 on the output phase, else 0.
    lengths: ``(batch,)`` int32, the number of vectors of each sequence.
  """

  inputs: jax.Array
  targets: jax.Array
  mask: jax.Array
  lengths: jax.Array


def time_steps(max_length: int) -> int:
  """Steps of a sequence of ``max_length`` vectors: flags, input and output phases."""
  return 2 * check_positive_int(max_length, 'max_length') + 2


def check_lengths(min_length, max_length) -> tuple[int, int]:
  """``(min_length, max_length)`` as ints if ``1 <= min_length <= max_length``."""
  min_length = check_positive_int(min_length, 'min_length')
  max_length = check_positive_int(max_length, 'max_length')
  if min_length > max_length:
    raise ValueError(
      f'min_length={min_length} exceeds max_length={max_length}; the copy task '
      'draws lengths uniformly from min_length..max_length.'
    )
  return min_length, max_length


def copy_sequence(
  vectors: jax.Array, length: jax.Array, max_length: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(inputs, targets, mask)`` of one sequence: the first ``length`` rows of
  ``vectors`` ``(max_length, bits)``, laid out as in the module docstring.

  ``length`` may be traced (inside ``jit`` or ``vmap``); it must lie in
  ``1..max_length``, which ``sample_batch`` guarantees.
  """
  t = jnp.arange(time_steps(max_length))
  in_input = (t >= 1) & (t <= length)
  in_output = (t >= length + 2) & (t <= 2 * length + 1)
  rows = jnp.clip(t - 1, 0, max_length - 1)
  shown = jnp.where(in_input[:, None], vectors[rows], 0)
  start = (t == 0).astype(vectors.dtype)
  end = (t == length + 1).astype(vectors.dtype)
  inputs = jnp.concatenate([shown, start[:, None], end[:, None]], axis=1)
  rows = jnp.clip(t - length - 2, 0, max_length - 1)
  targets = jnp.where(in_output[:, None], vectors[rows], 0)
  return inputs, targets, in_output.astype(vectors.dtype)


def sample_batch(
  key: jax.Array, batch_size: int, min_length: int, max_length: int, bits: int
) -> CopyBatch:
  """``batch_size`` sequences, lengths uniform in ``min_length..max_length``, each
  vector's bits independent fair coins; padded to ``time_steps(max_length)``."""
  batch_size = check_positive_int(batch_size, 'batch_size')
  min_length, max_length = check_lengths(min_length, max_length)
  bits = check_positive_int(bits, 'bits')
  length_key, bits_key = jax.random.split(key)
  lengths = jax.random.randint(
    length_key, (batch_size,), min_length, max_length + 1, dtype=jnp.int32
  )
  vectors = jax.random.bernoulli(bits_key, 0.5, (batch_size, max_length, bits))
  inputs, targets, mask = jax.vmap(copy_sequence, (0, 0, None))(
    vectors.astype(jnp.float32), lengths, max_length
  )
  return CopyBatch(inputs, targets, mask, lengths)


def pad_batch(batch: CopyBatch, max_length: int) -> CopyBatch:
  """``batch`` padded at the end with blank, unmasked steps to
  ``time_steps(max_length)``: the batch ``sample_batch`` would give with that
  ``max_length`` for the same sequences."""
  extra = time_steps(max_length) - batch.inputs.shape[1]
  if extra < 0:
    raise ValueError(
      f'the batch has {batch.inputs.shape[1]} steps, more than the '
      f'{time_steps(max_length)} of max_length={max_length}.'
    )

  def pad(x):
    return jnp.pad(x, [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2))

  return CopyBatch(
    pad(batch.inputs), pad(batch.targets), pad(batch.mask), batch.lengths
  )


def cost_in_bits(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Binary cross-entropy of ``sigmoid(logits)``, summed over the masked steps and
  the bits, in bits: ``(...)`` for ``logits`` and ``targets`` ``(..., time, bits)``
  and ``mask`` ``(..., time)``."""
  nats = optax.sigmoid_binary_cross_entropy(logits, targets)
  return jnp.sum(nats * mask[..., None], axis=(-2, -1)) / math.log(2)


def bit_errors(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Wrong bits after thresholding ``sigmoid(logits)`` at 0.5, summed over the
  masked steps: the "cost" that the reference implementations log."""
  wrong = (logits > 0) != (targets > 0.5)
  return jnp.sum(wrong * mask[..., None], axis=(-2, -1))
