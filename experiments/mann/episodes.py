"""The one-shot sequences of Santoro et al. (2016, Sec. 4) and their by-instance accuracy.

An episode shows ``num_classes`` Omniglot characters, ``instances`` distinct drawings
of each, in a random order: ``num_classes * instances`` steps. The ``k``-th drawn
character is given the episode label ``k``; characters are drawn without replacement
in a random order, so which label a character gets is random in every episode. Each
class is rotated by a random multiple of 90 degrees for the whole episode, and each
image is resized to ``image_size`` and then translated by a random whole number of
pixels in ``[-max_shift, max_shift]`` along each axis (zeros shifted in). Everything
is drawn on device from a uint8 bank ``(characters, drawings, height, width)`` passed
as an argument, so the sampler runs inside a jitted training step.

``accuracy_by_instance`` is the measure of the paper's Table 1: the accuracy at the
1st, 2nd, ... presentation of a class within an episode.

Example::

  sampler = make_sequence_sampler(num_classes=5, instances=10, image_size=20)
  batch = jax.jit(sampler.sample_from, static_argnums=2)(bank, key, 16)
  inputs = model_inputs(batch, 5)  # (16, 50, 400 + 5): [x_t, one_hot(y_{t-1})]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jmeta
from jmeta.validation import check_positive_int


class SequenceBatch(NamedTuple):
  """Episodes of the one-shot task, with what was drawn to make them.

  Attributes:
    images: float32 in [0, 1], ``(episodes, steps, image_size, image_size)``.
    labels: int32 episode labels in ``[0, num_classes)``, ``(episodes, steps)``.
    characters: the bank row of each label, ``(episodes, num_classes)``.
    rotations: each label's quarter turns (``np.rot90``), ``(episodes, num_classes)``.
    drawings: the drawing shown at each step, ``(episodes, steps)``.
    shifts: each step's ``(down, right)`` translation in pixels, ``(episodes,
      steps, 2)``.
  """

  images: jax.Array
  labels: jax.Array
  characters: jax.Array
  rotations: jax.Array
  drawings: jax.Array
  shifts: jax.Array


class SequenceSampler(NamedTuple):
  """``sample_from(bank, key, num_episodes) -> SequenceBatch``, pure and jittable
  (``num_episodes`` static); ``steps`` is ``num_classes * instances``."""

  sample_from: Callable[[jax.Array, jax.Array, int], SequenceBatch]
  num_classes: int
  instances: int
  steps: int


def rotate_quarter_turns(image: jax.Array, turns: jax.Array) -> jax.Array:
  """``np.rot90(image, turns)`` of one square image for a traced ``turns`` in [0, 4)."""
  options = jnp.stack([jnp.rot90(image, r) for r in range(4)])
  return options[turns]


def translate(image: jax.Array, shift: jax.Array, max_shift: int) -> jax.Array:
  """``image`` moved ``shift = (down, right)`` pixels, zeros shifted in;
  ``|shift| <= max_shift`` along each axis."""
  if max_shift == 0:
    return image
  padded = jnp.pad(image, max_shift)
  return lax.dynamic_slice(padded, max_shift - shift, image.shape)


def make_sequence_sampler(
  num_classes: int = 5,
  instances: int = 10,
  image_size: int = 20,
  *,
  max_shift: int = 0,
  rotate: bool = True,
) -> SequenceSampler:
  """Episodes of ``num_classes`` characters shown ``instances`` times each.

  Args:
    num_classes: characters (and labels) per episode.
    instances: distinct drawings shown of each character.
    image_size: the side the images are resized to (``jax.image.resize``,
      linear with antialiasing).
    max_shift: the largest translation in pixels, after resizing.
    rotate: a random multiple of 90 degrees per class per episode.

  Raises:
    ValueError: a size is not a positive integer or ``max_shift`` is not in
      ``[0, image_size)``; at sampling, a bank that is not uint8 ``(characters,
      drawings, height, width)`` with at least ``num_classes`` characters and
      ``instances`` drawings.
  """
  num_classes = check_positive_int(num_classes, 'num_classes')
  instances = check_positive_int(instances, 'instances')
  image_size = check_positive_int(image_size, 'image_size')
  if not 0 <= int(max_shift) < image_size:
    raise ValueError(
      f'max_shift must be in [0, image_size) = [0, {image_size}), got {max_shift}.'
    )
  max_shift = int(max_shift)
  steps = num_classes * instances

  def one_episode(bank: jax.Array, key: jax.Array) -> SequenceBatch:
    characters, drawings = bank.shape[:2]
    class_key, draw_key, order_key, rot_key, shift_key = jax.random.split(key, 5)
    chars = jax.random.choice(class_key, characters, (num_classes,), replace=False)
    noise = jax.random.uniform(draw_key, (num_classes, drawings))
    draws = jnp.argsort(noise, axis=-1)[:, :instances]  # distinct per class
    order = jax.random.permutation(order_key, steps)
    labels = (order // instances).astype(jnp.int32)
    step_draws = draws.reshape(-1)[order]
    turns = jax.random.randint(rot_key, (num_classes,), 0, 4)
    if not rotate:
      turns = jnp.zeros_like(turns)
    shifts = jax.random.randint(shift_key, (steps, 2), -max_shift, max_shift + 1)
    x = bank[chars[labels], step_draws].astype(jnp.float32) / 255.0
    x = jax.image.resize(x, (steps, image_size, image_size), 'linear')
    x = jnp.clip(x, 0.0, 1.0)  # the antialiasing kernel can overshoot by an ulp
    x = jax.vmap(rotate_quarter_turns)(x, turns[labels])
    x = jax.vmap(translate, (0, 0, None))(x, shifts, max_shift)
    return SequenceBatch(x, labels, chars, turns, step_draws, shifts)

  def sample_from(bank: jax.Array, key: jax.Array, num_episodes: int) -> SequenceBatch:
    check_bank(bank, num_classes, instances)
    keys = jax.random.split(key, check_positive_int(num_episodes, 'num_episodes'))
    return jax.vmap(one_episode, (None, 0))(bank, keys)

  return SequenceSampler(sample_from, num_classes, instances, steps)


def check_bank(bank: jax.Array, num_classes: int, instances: int) -> None:
  """Raises ``ValueError`` unless ``bank`` can give such episodes (shapes only)."""
  shape = tuple(np.shape(bank))
  if len(shape) != 4 or shape[2] != shape[3]:
    raise ValueError(
      'the image bank must be (characters, drawings, height, width) with square '
      f'images, got shape {shape}.'
    )
  if bank.dtype != jnp.uint8:
    raise ValueError(f'the image bank must be uint8 in [0, 255], got {bank.dtype}.')
  if num_classes > shape[0]:
    raise ValueError(
      f'num_classes={num_classes} exceeds the {shape[0]} characters of the bank.'
    )
  if instances > shape[1]:
    raise ValueError(
      f'instances={instances} exceeds the {shape[1]} drawings per character; the '
      'instances of a class are distinct drawings.'
    )


def model_inputs(batch: SequenceBatch, num_classes: int) -> jax.Array:
  """``[x_t flattened, one_hot(y_{t-1})]`` per step, ``(episodes, steps, features)``."""
  images = batch.images.reshape(batch.images.shape[:2] + (-1,))
  return jax.vmap(jmeta.memory.with_previous_labels, (0, 0, None))(
    images, batch.labels, num_classes
  )


def instance_numbers(labels: jax.Array, num_classes: int) -> jax.Array:
  """For each step, how many times its label has been shown so far, itself included
  (1 at a class's first presentation); ``labels`` is one episode ``(steps,)``."""
  counts = jnp.cumsum(jax.nn.one_hot(labels, num_classes, dtype=jnp.int32), axis=0)
  return jnp.take_along_axis(counts, labels[:, None], axis=1)[:, 0]


def accuracy_by_instance(
  predictions: jax.Array, labels: jax.Array, num_classes: int, max_instance: int
) -> jax.Array:
  """Per episode, the accuracy at the 1st, ..., ``max_instance``-th presentation of a
  class (Santoro et al., 2016, Table 1).

  Args:
    predictions: predicted labels, ``(episodes, steps)``.
    labels: true labels in ``[0, num_classes)``, ``(episodes, steps)``.
    num_classes: the labels per episode.
    max_instance: the last presentation to report.

  Returns:
    float32 ``(episodes, max_instance)``: column ``k - 1`` is the fraction of the
    episode's ``k``-th presentations that were predicted right (NaN where no class
    was shown ``k`` times).
  """
  num_classes = check_positive_int(num_classes, 'num_classes')
  max_instance = check_positive_int(max_instance, 'max_instance')
  if np.ndim(labels) != 2 or np.shape(predictions) != np.shape(labels):
    raise ValueError(
      'predictions and labels must both be (episodes, steps), got shapes '
      f'{np.shape(predictions)} and {np.shape(labels)}.'
    )

  def one(pred: jax.Array, label: jax.Array) -> jax.Array:
    number = instance_numbers(label, num_classes)
    shown = number[:, None] == jnp.arange(1, max_instance + 1)  # (steps, instances)
    right = (pred == label)[:, None] & shown
    return right.sum(0) / jnp.where(shown.any(0), shown.sum(0), jnp.nan)

  return jax.vmap(one)(predictions, labels).astype(jnp.float32)
