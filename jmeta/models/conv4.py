"""The four-block convolutional network of few-shot learning (Vinyals et al., 2016)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jmeta.models.base import TRANSDUCTIVE, Model, batch_norm_apply
from jmeta.models.layers import (
  BLOCK_INITS,
  conv_block,
  conv_block_init,
  dense,
  dense_init,
  init_layers,
  resolve_conv_impls,
)
from jmeta.validation import check_choice

CONV4_VARIANTS = ('strided', 'maxpool')
HEAD_INITS = ('glorot_uniform', 'normal')


def excluding_batch_norm_offsets(path: tuple) -> bool:
  """A leaf selector (``jmeta.inner_rules.head_mask``) for every Conv4 parameter but
  the batch-norm offsets (``block_i/bias``): what MAML's reference code adapts in its
  inner loop, where the offsets are variables of the batch-norm layers, trained by
  the outer optimizer only (``maml(..., adapts=excluding_batch_norm_offsets)``)."""
  return not (
    len(path) == 2
    and str(getattr(path[0], 'key', '')).startswith('block_')
    and getattr(path[1], 'key', None) == 'bias'
  )


def conv4(
  num_classes: int,
  *,
  variant: str = 'strided',
  filters: int = 64,
  conv_impl: str | Sequence[str] = 'auto',
  batch_norm_scale: bool = True,
  batch_norm_eps: float = 1e-5,
  head_init: str = 'glorot_uniform',
  block_init: str = 'glorot_uniform',
) -> Model:
  """Conv4: four blocks of [3x3 conv, batch norm, ReLU], then a linear head.

  Variants:
    * ``'strided'``: MAML's Omniglot network (Finn et al., 2017): stride-2
      convolutions, no pooling, features averaged over space before the head.
    * ``'maxpool'``: stride-1 convolutions each followed by 2x2 max-pooling
      (Vinyals et al., 2016; Snell et al., 2017), features flattened before the head.

  Inputs are NHWC images. ``num_classes=0`` gives the embedding network alone (no
  head), as metric learners use it. ``conv_impl`` is 'xla', 'patches' or 'auto'
  (chosen per backend; see ``jmeta.models.layers.default_conv_impl``), for every
  block, or one per block (``'xla,patches,patches,patches'``). On XLA:CPU, XLA's
  convolution in the first block alone made no meta-update faster than patches in
  every block (``benchmarks/results/cpu_conv_impl_per_layer.md``).

  MAML's reference code (github.com/cbfinn/maml) differs from the defaults in three
  ways, each an option: its batch norm has no scale (``batch_norm_scale=False``)
  and epsilon 1e-3 (``batch_norm_eps=1e-3``), and its Omniglot head is drawn from a
  standard normal (``head_init='normal'``; the default is Glorot-uniform).

  ``block_init`` draws the blocks' params (``jmeta.models.layers.conv_block_init``):
  ``'torch_2017'`` is the PyTorch initialisation of the 2017 reference codes, such
  as Prototypical Networks' (Snell et al., 2017), batch-norm scales from U(0, 1).
  """
  check_choice(variant, CONV4_VARIANTS, 'Conv4 variant')
  check_choice(head_init, HEAD_INITS, 'head_init')
  check_choice(block_init, BLOCK_INITS, 'block_init')
  if not batch_norm_eps > 0:
    raise ValueError(f'batch_norm_eps must be positive, got {batch_norm_eps}.')
  if num_classes < 0 or filters < 1:
    raise ValueError(
      f'need num_classes >= 0 and filters >= 1, got {num_classes} and {filters}.'
    )
  impls = resolve_conv_impls(conv_impl, 4)
  stride = 2 if variant == 'strided' else 1

  def embed(
    params: dict, x: jax.Array, bn_mode: str, num_support: int | None = None
  ) -> jax.Array:
    for i in range(4):
      x = conv_block(
        params[f'block_{i}'],
        x,
        stride=stride,
        impl=impls[i],
        mode=bn_mode,
        num_support=num_support,
        pool=variant == 'maxpool',
        eps=batch_norm_eps,
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
    init_block = functools.partial(
      conv_block_init, scale=batch_norm_scale, init=block_init
    )
    params = init_layers(keys[:4], cin, (filters,) * 4, init_block, 'block')
    if num_classes:
      features = jax.eval_shape(
        lambda p, x: embed(p, x, TRANSDUCTIVE), params, example_inputs[:1]
      )
      params['head'] = dense_init(keys[4], features.shape[-1], num_classes)
      if head_init == 'normal':
        shape = params['head']['w'].shape
        params['head']['w'] = jax.random.normal(keys[4], shape, jnp.float32)
    return params

  def forward(
    params: dict, inputs: jax.Array, bn_mode: str, num_support: int | None
  ) -> jax.Array:
    x = embed(params, inputs, bn_mode, num_support)
    if 'head' in params:
      x = dense(x, params['head']['w'], params['head']['b'])
    return x

  return Model(init, batch_norm_apply(forward))
