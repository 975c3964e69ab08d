"""The Flax Linen networks of the neural statistician (Edwards & Storkey, 2017).

Each network is a small ``linen.Module``; ``jmeta.neural_statistician.model`` keeps
their params as one plain nested dict and calls them through pure functions, so
no framework object reaches a caller.

* ``ConvEncoder``: the shared encoder, image -> feature vector h (3x3 convolutions,
  every stage a stride-1 then a stride-2 convolution, then one dense layer).
* ``PrePool`` / ``PostPool``: the statistic network, h -> e per image, then the
  pooled mean of e over the set -> the mean and std of q(c | D).
* ``GaussianHead``: a diagonal Gaussian from the sum of one dense embedding per
  input (h, c, the previous z), an ELU and a residual block of dense layers; the
  inference networks q(z_l | z_{l-1}, x, c) and the latent decoders
  p(z_l | z_{l-1}, c) are all of this shape.
* ``ObservationDecoder``: Bernoulli logits of every pixel from (z_1..z_L, c).

Stds are ``min_std + softplus(.)``: no batch normalisation here (the reference
code normalises every layer, including a "global" batch norm of the Gaussian
parameters), so the std is kept positive and away from 0 by construction instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen


def elu_stack(x: jax.Array, width: int, layers: int) -> jax.Array:
  """``layers`` dense layers of ``width`` with ELUs between them, added to ``x``
  (a residual block; ``x`` must have ``width`` features), then an ELU."""
  e = x
  for i in range(layers):
    e = linen.Dense(width)(e)
    if i < layers - 1:
      e = linen.elu(e)
  return linen.elu(e + x)


class ConvEncoder(linen.Module):
  """``(..., height, width, 1)`` images -> ``(..., features)``."""

  channels: Sequence[int]
  features: int

  @linen.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    x = images
    for c in self.channels:
      x = linen.elu(linen.Conv(c, (3, 3))(x))
      x = linen.elu(linen.Conv(c, (3, 3), strides=2)(x))
    x = x.reshape(x.shape[:-3] + (-1,))
    return linen.elu(linen.Dense(self.features)(x))


class PrePool(linen.Module):
  """h -> e, one vector per image, before the set is pooled."""

  hidden: int

  @linen.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    return linen.elu(linen.Dense(self.hidden)(h))


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

  @linen.compact
  def __call__(self, *inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    e = sum(linen.Dense(self.hidden)(x) for x in inputs)
    e = elu_stack(linen.elu(e), self.hidden, self.layers)
    mean, raw = jnp.split(linen.Dense(2 * self.size)(e), 2, axis=-1)
    return mean, self.min_std + jax.nn.softplus(raw)


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
  """``(..., h, w, block^2 c) -> (..., block h, block w, c)`` (a sub-pixel
  upsampling, Shi et al., 2016)."""
  *lead, h, w, ch = x.shape
  c = ch // (block * block)
  x = x.reshape(*lead, h, w, block, block, c)
  x = jnp.moveaxis(x, -3, -4)  # (..., h, block, w, block, c)
  return x.reshape(*lead, h * block, w * block, c)


class ObservationDecoder(linen.Module):
  """``(zs, c) -> logits`` of ``(..., height, width, 1)`` Bernoulli pixels.

  A dense layer to a ``(height / 2^S, width / 2^S, channels[-1])`` map, then per
  stage (the encoder's channels in reverse) a 3x3 convolution to 4x the stage's
  channels and a sub-pixel upsampling by 2, then a 3x3 convolution to one
  channel. Sub-pixel steps cost a quarter of a stride-2 transposed convolution
  with the same output, which matters on a CPU.
  """

  channels: Sequence[int]
  hidden: int
  image_shape: tuple[int, int, int]

  @linen.compact
  def __call__(self, zs: jax.Array, c: jax.Array) -> jax.Array:
    e = linen.elu(linen.Dense(self.hidden)(zs) + linen.Dense(self.hidden)(c))
    scale = 2 ** len(self.channels)
    height, width = self.image_shape[0] // scale, self.image_shape[1] // scale
    top = self.channels[-1]
    x = linen.elu(linen.Dense(height * width * top)(e))
    x = x.reshape(x.shape[:-1] + (height, width, top))
    for ch in reversed(self.channels):
      x = linen.elu(depth_to_space(linen.Conv(4 * ch, (3, 3))(x)))
    return linen.Conv(self.image_shape[-1], (3, 3))(x)
