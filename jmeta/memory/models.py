"""Memory-augmented recurrent models: MANN with LRUA, NTM, and a plain LSTM.

Each is a ``MemoryModel``, a NamedTuple of pure functions:

* ``init(key, example_input) -> params`` (only the last axis of ``example_input``,
  the features per step, is read);
* ``initial_state(params) -> MemoryModelState``, the state before an episode;
* ``step(params, state, x) -> (state, output)`` for one time step ``x``
  ``(features,)``;
* ``apply(params, sequence) -> outputs``: one episode ``(time, features)`` as one
  ``lax.scan`` of ``step``, giving ``(time, output_size)``. ``jax.vmap(apply,
  (None, 0))`` runs a batch of episodes.

At step t an LSTM controller (flax's ``LSTMCell``) reads ``[x_t, r_{t-1}]``, where
``r_{t-1}`` are the previous step's read vectors; a linear layer of its output
``h_t`` gives the heads' parameters; the memory is written and read; the output is
a linear layer of ``[h_t, r_t]`` (Santoro et al., 2016, Sec. 3.1; Graves et al.,
2014, Sec. 2). Keys and add vectors pass through tanh, erase vectors and gates
through a sigmoid, key strengths through softplus, shift weights through a
softmax and the sharpening exponent through ``1 + softplus``.

For the one-shot task of Santoro et al. the input of step t is ``[x_t,
one_hot(y_{t-1})]``: ``with_previous_labels`` builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jmeta.memory.access import MemoryAccess, check_heads_fit, check_memory_sizes
from jmeta.memory.lrua import LRUAState, lrua
from jmeta.memory.ntm_access import NTMHeads, NTMState, ntm_access
from jmeta.models.base import Params, PRNGKey
from jmeta.models.layers import dense, dense_init
from jmeta.validation import check_positive_int


class MemoryModelState(NamedTuple):
  """The state of a memory-augmented model between steps: one pytree for ``lax.scan``.

  Attributes:
    controller: the LSTM's ``(cell, hidden)``, each ``(controller_size,)``.
    access: the memory's state (``LRUAState`` or ``NTMState``; None for a plain
      LSTM).
    reads: the read vectors ``r_t``, ``(read_heads, width)`` (None for a plain
      LSTM).
  """

  controller: tuple[jax.Array, jax.Array]
  access: LRUAState | NTMState | None
  reads: jax.Array | None


class MemoryModel(NamedTuple):
  """A recurrent model as pure functions; see the module docstring.

  Attributes:
    init: ``init(key, example_input) -> params``.
    initial_state: ``initial_state(params) -> MemoryModelState``.
    step: ``step(params, state, x) -> (state, output)``.
    apply: ``apply(params, sequence) -> outputs``.
  """

  init: Callable[[PRNGKey, jax.Array], Params]
  initial_state: Callable[[Params], MemoryModelState]
  step: Callable[[Params, MemoryModelState, jax.Array], tuple[MemoryModelState, Any]]
  apply: Callable[[Params, jax.Array], jax.Array]


def recurrent_model(
  output_size: int,
  controller_size: int,
  access: MemoryAccess | None = None,
  read_shape: tuple[int, int] = (0, 0),
  interface_size: int = 0,
  interface: Callable[[jax.Array], tuple] | None = None,
) -> MemoryModel:
  """An LSTM controller with an optional memory, as a ``MemoryModel``.

  ``interface`` maps the ``interface_size`` outputs of the linear layer on ``h_t``
  to the arguments of ``access.update`` after the state; ``read_shape`` is
  ``(read_heads, width)``. Without ``access`` this is a plain LSTM.
  """
  output_size = check_positive_int(output_size, 'output_size')
  controller_size = check_positive_int(controller_size, 'controller_size')
  cell = nn.LSTMCell(controller_size)
  read_size = int(np.prod(read_shape)) if access is not None else 0

  def init(key: PRNGKey, example_input: jax.Array) -> Params:
    if np.ndim(example_input) < 1 or np.shape(example_input)[-1] < 1:
      raise ValueError(
        'example_input must have a last axis of features (e.g. a sequence of '
        f'shape (time, features)), got shape {np.shape(example_input)}.'
      )
    features = np.shape(example_input)[-1]
    cell_key, interface_key, output_key = jax.random.split(key, 3)
    zeros = jnp.zeros((controller_size,), jnp.float32)
    params = {
      'controller': cell.init(
        cell_key, (zeros, zeros), jnp.zeros((features + read_size,), jnp.float32)
      )
    }
    if access is not None:
      params['interface'] = dense_init(interface_key, controller_size, interface_size)
    params['output'] = dense_init(output_key, controller_size + read_size, output_size)
    return params

  def input_size(params: Params) -> int:
    return np.shape(params['controller']['params']['ii']['kernel'])[0] - read_size

  def initial_state(params: Params) -> MemoryModelState:
    dtype = params['output']['w'].dtype
    zeros = jnp.zeros((controller_size,), dtype)
    if access is None:
      return MemoryModelState((zeros, zeros), None, None)
    return MemoryModelState(
      (zeros, zeros), access.init(dtype), jnp.zeros(read_shape, dtype)
    )

  def unchecked_step(
    params: Params, state: MemoryModelState, x: jax.Array
  ) -> tuple[MemoryModelState, jax.Array]:
    if access is None:
      carry, hidden = cell.apply(params['controller'], state.controller, x)
      output = dense(hidden, params['output']['w'], params['output']['b'])
      return MemoryModelState(carry, None, None), output
    controller_input = jnp.concatenate([x, state.reads.reshape(-1)])
    carry, hidden = cell.apply(params['controller'], state.controller, controller_input)
    head_outputs = interface(
      dense(hidden, params['interface']['w'], params['interface']['b'])
    )
    reads, access_state = access.update(state.access, *head_outputs)
    features = jnp.concatenate([hidden, reads.reshape(-1)])
    output = dense(features, params['output']['w'], params['output']['b'])
    return MemoryModelState(carry, access_state, reads), output

  def check_features(params: Params, shape: tuple[int, ...], what: str) -> None:
    expected = input_size(params)
    if shape[-1:] != (expected,):
      raise ValueError(
        f'{what} has shape {shape}, but the model was initialised for {expected} '
        "features per step (the last axis of init's example_input); pass inputs "
        'with that many features or re-initialise.'
      )

  def step(
    params: Params, state: MemoryModelState, x: jax.Array
  ) -> tuple[MemoryModelState, jax.Array]:
    if np.ndim(x) != 1:
      raise ValueError(
        f'step takes one time step of shape (features,), got shape {np.shape(x)}; '
        'apply runs a whole sequence.'
      )
    check_features(params, np.shape(x), 'the step input')
    return unchecked_step(params, state, x)

  def apply(params: Params, sequence: jax.Array) -> jax.Array:
    if np.ndim(sequence) != 2:
      raise ValueError(
        'apply runs one episode of shape (time, features), got shape '
        f'{np.shape(sequence)}; for a batch of episodes use '
        'jax.vmap(model.apply, (None, 0)).'
      )
    check_features(params, np.shape(sequence), 'the sequence')

    def body(state, x):
      return unchecked_step(params, state, x)

    _, outputs = lax.scan(body, initial_state(params), sequence)
    return outputs

  return MemoryModel(init, initial_state, step, apply)


def mann(
  output_size: int,
  *,
  memory_slots: int = 128,
  memory_width: int = 40,
  controller_size: int = 200,
  read_heads: int = 4,
  gamma: float = 0.95,
  separate_values: bool = False,
) -> MemoryModel:
  """A memory-augmented neural network with LRUA memory (Santoro et al., 2016).

  The defaults are the Omniglot model of the paper and of its reference
  implementations: an LSTM controller of 200 units, a 128 x 40 memory, 4 heads
  and usage decay 0.95. Per head the controller emits a key (tanh) and the gate
  logit alpha; the memory stores the key (the paper), or with
  ``separate_values=True`` a separate tanh vector (as the reference implementations
  do). See ``jmeta.memory.lrua`` for the memory's equations and choices.
  """
  read_heads = check_positive_int(read_heads, 'read_heads')
  slots, width = check_memory_sizes(memory_slots, memory_width)
  check_heads_fit(read_heads, slots, 'read_heads')
  access = lrua(slots, width, read_heads, gamma)
  per_head = 2 * width + 1 if separate_values else width + 1

  def interface(out: jax.Array) -> tuple:
    out = out.reshape(read_heads, per_head)
    keys, alpha = jnp.tanh(out[:, :width]), out[:, width]
    values = jnp.tanh(out[:, width + 1 :]) if separate_values else None
    return keys, alpha, values

  return recurrent_model(
    output_size,
    controller_size,
    access,
    (read_heads, width),
    read_heads * per_head,
    interface,
  )


def ntm(
  output_size: int,
  *,
  memory_slots: int = 128,
  memory_width: int = 20,
  controller_size: int = 100,
  read_heads: int = 1,
  write_heads: int = 1,
  shift_width: int = 3,
) -> MemoryModel:
  """A Neural Turing Machine with an LSTM controller (Graves et al., 2014).

  The defaults are the LSTM-controller NTM of the paper's copy task: 100 units, a
  128 x 20 memory, one read and one write head, shifts -1, 0, +1. See
  ``jmeta.memory.ntm_access`` for the step.
  """
  access = ntm_access(memory_slots, memory_width, read_heads, write_heads, shift_width)
  width, shifts = int(memory_width), int(shift_width)
  per_head = width + shifts + 3
  n_read, n_write = int(read_heads), int(write_heads)

  def heads(out: jax.Array) -> NTMHeads:
    return NTMHeads(
      key=jnp.tanh(out[:, :width]),
      strength=jax.nn.softplus(out[:, width]),
      gate=jax.nn.sigmoid(out[:, width + 1]),
      shift=jax.nn.softmax(out[:, width + 2 : width + 2 + shifts], axis=-1),
      sharpen=1 + jax.nn.softplus(out[:, width + 2 + shifts]),
    )

  def interface(out: jax.Array) -> tuple:
    read = out[: n_read * per_head].reshape(n_read, per_head)
    write = out[n_read * per_head :].reshape(n_write, per_head + 2 * width)
    erase = jax.nn.sigmoid(write[:, per_head : per_head + width])
    add = jnp.tanh(write[:, per_head + width :])
    return heads(read), heads(write[:, :per_head]), erase, add

  return recurrent_model(
    output_size,
    controller_size,
    access,
    (n_read, width),
    n_read * per_head + n_write * (per_head + 2 * width),
    interface,
  )


def lstm(output_size: int, *, controller_size: int = 200) -> MemoryModel:
  """A plain LSTM with a linear output: the LSTM baseline of Santoro et al. (2016)."""
  return recurrent_model(output_size, controller_size)


def with_previous_labels(
  inputs: jax.Array, labels: jax.Array, num_classes: int
) -> jax.Array:
  """``[x_t, one_hot(y_{t-1})]`` for each step, zeros for t = 0 (Santoro et al., Sec. 2).

  ``inputs`` is one episode ``(time, features)`` and ``labels`` its integer labels
  ``(time,)``, or ``(time, length)`` for labels that are strings of ``length``
  symbols in ``[0, num_classes)`` (the paper's string labels: the symbols'
  one-hots are concatenated); returns ``(time, features + length * num_classes)``. The label of step t is shown only at step t + 1, so the model
  must predict it from memory first.
  """
  num_classes = check_positive_int(num_classes, 'num_classes')
  if (
    np.ndim(inputs) != 2
    or np.ndim(labels) not in (1, 2)
    or np.shape(labels)[:1] != np.shape(inputs)[:1]
  ):
    raise ValueError(
      f'with_previous_labels takes one episode: inputs (time, features) and labels '
      f'(time,) or (time, length), got shapes {np.shape(inputs)} and '
      f'{np.shape(labels)}.'
    )
  steps = np.shape(inputs)[0]
  width = num_classes * (np.shape(labels)[1] if np.ndim(labels) == 2 else 1)
  previous = jax.nn.one_hot(labels[:-1], num_classes, dtype=inputs.dtype)
  previous = previous.reshape((max(steps - 1, 0), width))
  previous = jnp.concatenate([jnp.zeros((1, width), inputs.dtype), previous])
  # An empty episode has no labels[:-1] to drop: keep exactly one row per step.
  previous = previous[:steps]
  return jnp.concatenate([inputs, previous], axis=1)
