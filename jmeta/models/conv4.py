"""The four-block convolutional network of few-shot learning (Vinyals et al., 2016)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jmeta.models.base import TRANSDUCTIVE, Model, batch_norm_apply
from jmeta.models.layers import (
  conv_block,
  conv_block_init,
  dense,
  dense_init,
  init_layers,
  resolve_conv_impl,
)

CONV4_VARIANTS = ('strided', 'maxpool')


def conv4(
  num_classes: int,
  *,
  variant: str = 'strided',
  filters: int = 64,
  conv_impl: str = 'auto',
) -> Model:
  """Conv4: four blocks of [3x3 conv, batch norm, ReLU], then a linear head.

  Variants:
    * ``'strided'``: MAML's Omniglot network (Finn et al., 2017): stride-2
      convolutions, no pooling, features averaged over space before the head.
    * ``'maxpool'``: stride-1 convolutions each followed by 2x2 max-pooling
      (Vinyals et al., 2016; Snell et al., 2017), features flattened before the head.

  Inputs are NHWC images. ``num_classes=0`` gives the embedding network alone (no
  head), as metric learners use it. ``conv_impl`` is 'xla', 'patches' or 'auto'
  (chosen per backend; see ``jmeta.models.layers.default_conv_impl``).
  """
  if variant not in CONV4_VARIANTS:
    raise ValueError(
      f'unknown Conv4 variant {variant!r}; expected one of {CONV4_VARIANTS}.'
    )
  if num_classes < 0 or filters < 1:
    raise ValueError(
      f'need num_classes >= 0 and filters >= 1, got {num_classes} and {filters}.'
    )
  impl = resolve_conv_impl(conv_impl)
  stride = 2 if variant == 'strided' else 1

  def embed(
    params: dict, x: jax.Array, bn_mode: str, num_support: int | None = None
  ) -> jax.Array:
    for i in range(4):
      x = conv_block(
        params[f'block_{i}'],
        x,
        stride=stride,
        impl=impl,
        mode=bn_mode,
        num_support=num_support,
        pool=variant == 'maxpool',
      )
    if variant == 'strided':
      return jnp.mean(x, axis=(1, 2))
    return x.reshape(x.shape[0], -1)

  def init(key: jax.Array, example_inputs: jax.Array) -> dict:
    if example_inputs.ndim != 4:
      raise ValueError(
        f'conv4 expects NHWC images (batch, height, width, channels); '
        f'got example inputs of shape {example_inputs.shape}.'
      )
    keys = jax.random.split(key, 5)
    cin = example_inputs.shape[-1]
    params = init_layers(keys[:4], cin, (filters,) * 4, conv_block_init, 'block')
    if num_classes:
      features = jax.eval_shape(
        lambda p, x: embed(p, x, TRANSDUCTIVE), params, example_inputs[:1]
      )
      params['head'] = dense_init(keys[4], features.shape[-1], num_classes)
    return params

  def forward(
    params: dict, inputs: jax.Array, bn_mode: str, num_support: int | None
  ) -> jax.Array:
    x = embed(params, inputs, bn_mode, num_support)
    if 'head' in params:
      x = dense(x, params['head']['w'], params['head']['b'])
    return x

  return Model(init, batch_norm_apply(forward))
