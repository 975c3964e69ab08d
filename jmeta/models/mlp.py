"""Multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

from jmeta.models.base import Model, batch_norm_apply, check_batch_norm_mode
from jmeta.models.layers import dense, dense_init, init_layers


def mlp(
  hidden_sizes: Sequence[int],
  output_size: int,
  *,
  activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
) -> Model:
  """An MLP ``x -> W_L a(... a(W_1 x + b_1) ...) + b_L`` on inputs ``(..., features)``.

  The sinusoid model of Finn et al. (2017) is ``mlp((40, 40), 1)``. Params are
  ``{'layer_0': {'w', 'b'}, ..., 'layer_L': {'w', 'b'}}``.
  """
  sizes = tuple(int(s) for s in hidden_sizes) + (int(output_size),)
  if any(s < 1 for s in sizes):
    raise ValueError(f'layer sizes must be positive, got {sizes}.')

  def init(key: jax.Array, example_inputs: jax.Array) -> dict:
    keys = jax.random.split(key, len(sizes))
    return init_layers(keys, example_inputs.shape[-1], sizes, dense_init, 'layer')

  def forward(
    params: dict, inputs: jax.Array, bn_mode: str, num_support: int | None
  ) -> jax.Array:
    del num_support  # no batch norm
    check_batch_norm_mode(bn_mode)
    x = inputs
    for i in range(len(sizes)):
      layer = params[f'layer_{i}']
      x = dense(x, layer['w'], layer['b'])
      if i < len(sizes) - 1:
        x = activation(x)
    return x

  return Model(init, batch_norm_apply(forward))
