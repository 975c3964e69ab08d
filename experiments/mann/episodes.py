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

Labels are one-hot (Table 1), or with ``string_labels=True`` the five-character
strings of the paper's Table 2: each class of an episode gets a distinct random
string of ``STRING_LENGTH`` characters from an alphabet of ``STRING_ALPHABET``
('abcde', so 3,125 strings), shown to the model as the concatenated one-hots of its
characters and predicted by one softmax per character; a prediction is right only
if every character is. A one-hot label is the one-character string ``(k,)`` over
an alphabet of ``num_classes``, so one code path serves both.

``accuracy_by_instance`` is the measure of the paper's Tables 1 and 2: the accuracy
at the 1st, 2nd, ... presentation of a class within an episode.

Example::

  sampler = make_sequence_sampler(num_classes=5, instances=10, image_size=20)
  batch = jax.jit(sampler.sample_from, static_argnums=2)(bank, key, 16)
  inputs = model_inputs(batch, sampler.alphabet)  # (16, 50, 400 + 5)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import jmeta
from jmeta.validation import check_positive_int

# Santoro et al.'s string labels: five characters, each one of 'abcde'.
STRING_LENGTH = 5
STRING_ALPHABET = 5


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
    strings: each label's string of symbols, int32 ``(episodes, num_classes,
      label_length)``; ``(k,)`` for label ``k`` with one-hot labels.
  """

  images: jax.Array
  labels: jax.Array
  characters: jax.Array
  rotations: jax.Array
  drawings: jax.Array
  shifts: jax.Array
  strings: jax.Array


class SequenceSampler(NamedTuple):
  """``sample_from(bank, key, num_episodes) -> SequenceBatch``, pure and jittable
  (``num_episodes`` static); ``steps`` is ``num_classes * instances``. A label is a
  string of ``label_length`` symbols from an alphabet of ``alphabet``: the model
  reads and predicts ``label_length * alphabet`` label features per step."""

  sample_from: Callable[[jax.Array, jax.Array, int], SequenceBatch]
  num_classes: int
  instances: int
  steps: int
  label_length: int
  alphabet: int

  @property
  def label_features(self) -> int:
    """The label's features per step, read and predicted: one one-hot per symbol."""
    return self.label_length * self.alphabet


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
  string_labels: bool = False,
) -> SequenceSampler:
  """Episodes of ``num_classes`` characters shown ``instances`` times each.

  Args:
    num_classes: characters (and labels) per episode.
    instances: distinct drawings shown of each character.
    image_size: the side the images are resized to (``jax.image.resize``,
      linear with antialiasing).
    max_shift: the largest translation in pixels, after resizing.
    rotate: a random multiple of 90 degrees per class per episode.
    string_labels: a distinct random five-character string per class per episode
      (the paper's Table 2), instead of one-hot labels.

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
  if string_labels:
    label_length, alphabet = STRING_LENGTH, STRING_ALPHABET
  else:
    label_length, alphabet = 1, num_classes
  labels_available = alphabet**label_length
  if num_classes > labels_available:
    raise ValueError(
      f'num_classes={num_classes} exceeds the {labels_available} distinct string '
      'labels.'
    )
  places = alphabet ** np.arange(label_length)

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
    if string_labels:
      # A key of its own, so that one-hot episodes draw exactly what they did
      # before string labels existed.
      codes = jax.random.choice(
        jax.random.fold_in(key, 1), labels_available, (num_classes,), replace=False
      )
    else:
      codes = jnp.arange(num_classes)
    strings = (codes[:, None] // places % alphabet).astype(jnp.int32)
    return SequenceBatch(x, labels, chars, turns, step_draws, shifts, strings)

  def sample_from(bank: jax.Array, key: jax.Array, num_episodes: int) -> SequenceBatch:
    check_bank(bank, num_classes, instances)
    keys = jax.random.split(key, check_positive_int(num_episodes, 'num_episodes'))
    return jax.vmap(one_episode, (None, 0))(bank, keys)

  return SequenceSampler(
    sample_from, num_classes, instances, steps, label_length, alphabet
  )


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


def step_strings(batch: SequenceBatch) -> jax.Array:
  """The string of each step's label, ``(episodes, steps, label_length)``: the
  per-symbol targets."""
  return jax.vmap(lambda strings, labels: strings[labels])(batch.strings, batch.labels)


def model_inputs(batch: SequenceBatch, alphabet: int) -> jax.Array:
  """``[x_t flattened, one-hots of y_{t-1}'s symbols]`` per step, ``(episodes,
  steps, features)``; ``alphabet`` is the sampler's (``num_classes`` for one-hot
  labels)."""
  images = batch.images.reshape(batch.images.shape[:2] + (-1,))
  return jax.vmap(jmeta.memory.with_previous_labels, (0, 0, None))(
    images, step_strings(batch), alphabet
  )


def label_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per step, the cross-entropy of each symbol's softmax summed over the
  symbols: ``logits (..., label_length * alphabet)``, ``targets (..., label_length)``."""
  if np.shape(logits)[:-1] != np.shape(targets)[:-1]:
    raise ValueError(
      'targets must be (..., label_length) for logits (..., label_length * '
      f'alphabet), got shapes {np.shape(targets)} and {np.shape(logits)}; a one-hot '
      'label is the one-symbol string labels[..., None].'
    )
  logits = logits.reshape(targets.shape + (-1,))
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).sum(-1)


def predicted_labels(logits: jax.Array, strings: jax.Array) -> jax.Array:
  """The label whose string every symbol's arg-max spells, or -1 if no label of
  the episode has that string: ``logits (episodes, steps, label_length * alphabet)``,
  ``strings (episodes, num_classes, label_length)`` -> ``(episodes, steps)``."""
  spelled = jnp.argmax(
    logits.reshape(logits.shape[:2] + strings.shape[-1:] + (-1,)), -1
  )
  match = jnp.all(spelled[:, :, None, :] == strings[:, None, :, :], axis=-1)
  return jnp.where(match.any(-1), jnp.argmax(match, -1), -1)


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
