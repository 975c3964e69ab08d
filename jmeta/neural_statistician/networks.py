"""The Flax Linen networks of the neural statistician (Edwards & Storkey, 2017).

Each network is a small ``linen.Module``; ``jmeta.neural_statistician.model`` keeps
their params as one plain nested dict and calls them through pure functions, so
no framework object reaches a caller.

* ``ConvEncoder``: the shared encoder, image -> feature vector h (3x3 convolutions,
  every stage stride-1 convolutions then a stride-2 one, then one dense layer or,
  as in the reference code, none).
* ``PrePool`` / ``PostPool``: the statistic network, h -> e per image, then the
  pooled mean of e over the set -> the mean and std of q(c | D).
* ``GaussianHead``: a diagonal Gaussian from the sum of one dense embedding per
  input (h, c, the previous z), an ELU and a residual block of dense layers; the
  inference networks q(z_l | z_{l-1}, x, c) and the latent decoders
  p(z_l | z_{l-1}, c) are all of this shape.
* ``ObservationDecoder``: Bernoulli logits of every pixel from (z_1..z_L, c).

Stds are ``min_std + softplus(.)``, positive and away from 0 by construction. With
``batch_norm``, every hidden convolution and dense layer is batch-normalised before
its ELU, and each Gaussian's raw parameters by one "global" batch norm (a single
mean and variance over the batch and all of its outputs), as in the reference code
(conormdurkan/neural-statistician, ``omninets.py``). Batch statistics are taken
over every image (or set) of the batch, across a ``vmap`` over sets named
``SET_AXIS``; ``train=False`` uses the running averages instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen

# The name of the vmap over the sets of a batch, across which batch norm averages.
SET_AXIS = 'sets'
# PyTorch's defaults as the reference uses them: momentum 0.1 (flax: 0.9) and eps
# 1e-5 per layer; momentum 0.01 and eps 1e-3 for the global norm of a Gaussian.
# One difference stays: flax averages the biased batch variance, PyTorch the
# unbiased one (a factor m / (m - 1) over m values per statistic).
_LAYER_NORM = {'momentum': 0.9, 'epsilon': 1e-5}
_GLOBAL_NORM = {'momentum': 0.99, 'epsilon': 1e-3}


def normalize(x: jax.Array, enabled: bool, train: bool, axis_name: str | None):
  """``x`` batch-normalised over every axis but the last (identity if not
  ``enabled``); ``axis_name``: a vmap whose instances share the statistics."""
  if not enabled:
    return x
  return linen.BatchNorm(
    use_running_average=not train, axis_name=axis_name if train else None, **_LAYER_NORM
  )(x)


def global_normalize(x: jax.Array, train: bool, axis_name: str | None) -> jax.Array:
  """``x`` normalised by one mean and variance over all of its entries (and the
  vmap ``axis_name``), with one learned scale and offset: the reference's
  ``BatchNorm1d(1)`` of a Gaussian's parameters."""
  norm = linen.BatchNorm(
    use_running_average=not train,
    axis_name=axis_name if train else None,
    **_GLOBAL_NORM,
  )
  return norm(x[..., None])[..., 0]


def elu_stack(
  x: jax.Array,
  width: int,
  layers: int,
  batch_norm: bool = False,
  train: bool = False,
  axis_name: str | None = None,
) -> jax.Array:
  """``layers`` dense layers of ``width`` (each batch-normalised if ``batch_norm``)
  with ELUs between them, added to ``x`` (a residual block; ``x`` must have
  ``width`` features), then an ELU."""
  e = x
  for i in range(layers):
    e = normalize(linen.Dense(width)(e), batch_norm, train, axis_name)
    if i < layers - 1:
      e = linen.elu(e)
  return linen.elu(e + x)


class ConvEncoder(linen.Module):
  """``(..., height, width, 1)`` images -> ``(..., features)``.

  Per stage, ``convs_per_stage - 1`` stride-1 3x3 convolutions then a stride-2 one
  (``'SAME'`` padding: 28 -> 14 -> 7 -> 4); then a dense layer of ``features``, or
  with ``features=None`` the flattened map itself (the reference's 256 x 4 x 4).
  """

  channels: Sequence[int]
  features: int | None
  convs_per_stage: int = 2
  batch_norm: bool = False
  axis_name: str | None = None

  @linen.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    x = images
    for c in self.channels:
      for i in range(self.convs_per_stage):
        stride = 2 if i == self.convs_per_stage - 1 else 1
        x = linen.Conv(c, (3, 3), strides=stride)(x)
        x = linen.elu(normalize(x, self.batch_norm, train, self.axis_name))
    x = x.reshape(x.shape[:-3] + (-1,))
    if self.features is None:
      return x
    x = normalize(linen.Dense(self.features)(x), self.batch_norm, train, self.axis_name)
    return linen.elu(x)


class PrePool(linen.Module):
  """h -> e, one vector per image, before the set is pooled."""

  hidden: int
  batch_norm: bool = False
  axis_name: str | None = None

  @linen.compact
  def __call__(self, h: jax.Array, train: bool = False) -> jax.Array:
    e = linen.Dense(self.hidden)(h)
    return linen.elu(normalize(e, self.batch_norm, train, self.axis_name))


class GaussianHead(linen.Module):
  """``(inputs...) -> (mean, std)`` of a diagonal Gaussian over ``size`` dims.

  The inputs are embedded by one dense layer each and summed (they broadcast:
  a per-set c against per-image h), as in the paper's networks that concatenate
  their inputs.
  """

  size: int
  hidden: int
  layers: int
  min_std: float
  batch_norm: bool = False
  axis_name: str | None = None

  @linen.compact
  def __call__(
    self, *inputs: jax.Array, train: bool = False
  ) -> tuple[jax.Array, jax.Array]:
    e = sum(linen.Dense(self.hidden)(x) for x in inputs)
    norm = (self.batch_norm, train, self.axis_name)
    e = elu_stack(linen.elu(e), self.hidden, self.layers, *norm)
    raw = linen.Dense(2 * self.size)(e)
    if self.batch_norm:
      raw = global_normalize(raw, train, self.axis_name)
    mean, raw = jnp.split(raw, 2, axis=-1)
    return mean, self.min_std + jax.nn.softplus(raw)


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
  """``(..., h, w, block^2 c) -> (..., block h, block w, c)`` (a sub-pixel
  upsampling, Shi et al., 2016)."""
  *lead, h, w, ch = x.shape
  c = ch // (block * block)
  x = x.reshape(*lead, h, w, block, block, c)
  x = jnp.moveaxis(x, -3, -4)  # (..., h, block, w, block, c)
  return x.reshape(*lead, h * block, w * block, c)


def encoder_sizes(size: int, stages: int) -> list[int]:
  """The spatial sizes of a ``'SAME'``-padded stride-2 encoder: ``[size,
  ceil(size / 2), ...]``, ``stages + 1`` of them."""
  sizes = [size]
  for _ in range(stages):
    sizes.append(-(-sizes[-1] // 2))
  return sizes


class ObservationDecoder(linen.Module):
  """``(zs, c) -> logits`` of ``(..., height, width, 1)`` Bernoulli pixels.

  A dense layer to the encoder's last map (``channels[-1]`` channels), then per
  stage (the encoder's channels in reverse) ``convs_per_stage`` stride-1 3x3
  convolutions, a 3x3 convolution to 4x the stage's channels and a sub-pixel
  upsampling by 2, cropped to the encoder's map of that stage (7 from 8, for
  28 -> 4), then a 3x3 convolution to one channel. Sub-pixel steps cost a quarter of a stride-2
  transposed convolution with the same output (the reference's), which matters on
  a CPU.
  """

  channels: Sequence[int]
  hidden: int
  image_shape: tuple[int, int, int]
  convs_per_stage: int = 0
  batch_norm: bool = False
  axis_name: str | None = None

  @linen.compact
  def __call__(self, zs: jax.Array, c: jax.Array, train: bool = False) -> jax.Array:
    norm = (self.batch_norm, train, self.axis_name)
    e = linen.elu(linen.Dense(self.hidden)(zs) + linen.Dense(self.hidden)(c))
    heights = encoder_sizes(self.image_shape[0], len(self.channels))
    widths = encoder_sizes(self.image_shape[1], len(self.channels))
    top = self.channels[-1]
    x = linen.Dense(heights[-1] * widths[-1] * top)(e)
    x = linen.elu(normalize(x, *norm))
    x = x.reshape(x.shape[:-1] + (heights[-1], widths[-1], top))
    for stage in reversed(range(len(self.channels))):
      ch = self.channels[stage]
      for _ in range(self.convs_per_stage):
        x = linen.elu(normalize(linen.Conv(ch, (3, 3))(x), *norm))
      x = depth_to_space(linen.Conv(4 * ch, (3, 3))(x))
      x = linen.elu(normalize(x, *norm))[..., : heights[stage], : widths[stage], :]
    return linen.Conv(self.image_shape[-1], (3, 3))(x)
