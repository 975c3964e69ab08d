"""The MANN one-shot Omniglot experiment: episodes, accuracy by instance, a real run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.mann.episodes import (
  accuracy_by_instance,
  make_sequence_sampler,
  model_inputs,
)


def _bank(characters=7, drawings=12, size=8, seed=0):
  """A random uint8 bank: every image is told apart from every other."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(0, 256, (characters, drawings, size, size), np.uint8))


def _sample(bank, key=0, episodes=6, **kwargs):
  sampler = make_sequence_sampler(**kwargs)
  batch = jax.jit(sampler.sample_from, static_argnums=2)(
    bank, jax.random.key(key), episodes
  )
  return jax.device_get(batch)  # numpy: the checks index it element by element


def test_each_class_is_shown_its_instances_as_distinct_drawings():
  batch = _sample(_bank(), num_classes=4, instances=5, image_size=8)
  assert batch.images.shape == (6, 20, 8, 8)
  for e in range(6):
    labels, drawings = np.asarray(batch.labels[e]), np.asarray(batch.drawings[e])
    np.testing.assert_array_equal(np.bincount(labels, minlength=4), [5] * 4)
    assert len(set(np.asarray(batch.characters[e]).tolist())) == 4
    for c in range(4):
      assert len(set(drawings[labels == c].tolist())) == 5
  # The order is shuffled, not class by class.
  assert not np.all(np.diff(np.asarray(batch.labels), axis=1) >= 0)


def test_labels_are_a_fresh_assignment_per_episode():
  batch = _sample(_bank(characters=3), episodes=64, num_classes=3, instances=2)
  characters = np.asarray(batch.characters)
  # Each episode maps its 3 labels to the 3 characters one to one, and a character
  # gets every label over the episodes.
  assert all(sorted(row) == [0, 1, 2] for row in characters.tolist())
  labels_of_character_0 = np.argmax(characters == 0, axis=1)
  assert set(labels_of_character_0.tolist()) == {0, 1, 2}


def test_images_are_the_drawn_drawings_rotated_once_per_class():
  bank = _bank(size=8)
  batch = _sample(bank, num_classes=5, instances=4, image_size=8, max_shift=0)
  bank = np.asarray(bank)
  assert set(np.asarray(batch.rotations).ravel().tolist()) == {0, 1, 2, 3}
  for e in range(6):
    for t in range(20):
      label = int(batch.labels[e, t])
      character = int(batch.characters[e, label])
      image = np.asarray(bank[character, int(batch.drawings[e, t])]) / 255.0
      expected = np.rot90(image, int(batch.rotations[e, label]))
      np.testing.assert_allclose(batch.images[e, t], expected, atol=1e-6)


def test_images_are_resized_on_device():
  bank = _bank(size=8)
  batch = _sample(bank, num_classes=2, instances=3, image_size=4, rotate=False)
  label, draw = int(batch.labels[0, 0]), int(batch.drawings[0, 0])
  image = bank[int(batch.characters[0, label]), draw] / 255.0
  expected = jax.image.resize(image, (4, 4), 'linear')
  np.testing.assert_allclose(batch.images[0, 0], expected, atol=1e-6)
  assert int(np.asarray(batch.rotations).max()) == 0


def test_translations_move_each_image_by_its_shift():
  bank = _bank(size=8)
  still = _sample(bank, num_classes=3, instances=4, image_size=8, max_shift=0)
  moved = _sample(bank, num_classes=3, instances=4, image_size=8, max_shift=2)
  shifts = np.asarray(moved.shifts)
  assert shifts.min() == -2 and shifts.max() == 2
  for e in range(6):
    for t in range(12):
      down, right = shifts[e, t]
      expected = np.zeros((12, 12))
      expected[2 + down : 10 + down, 2 + right : 10 + right] = still.images[e, t]
      np.testing.assert_allclose(moved.images[e, t], expected[2:10, 2:10])


def test_the_previous_label_is_shown_one_step_late():
  batch = _sample(_bank(), num_classes=3, instances=4, image_size=8)
  inputs = model_inputs(batch, 3)
  assert inputs.shape == (6, 12, 64 + 3)
  np.testing.assert_array_equal(inputs[:, :, :64], batch.images.reshape(6, 12, 64))
  np.testing.assert_array_equal(inputs[:, 0, 64:], 0)
  np.testing.assert_array_equal(
    inputs[:, 1:, 64:], jax.nn.one_hot(batch.labels[:, :-1], 3)
  )


def test_sampler_refuses_episodes_the_bank_cannot_give():
  with pytest.raises(ValueError, match='num_classes=8 exceeds the 7 characters'):
    _sample(_bank(), num_classes=8, instances=2)
  with pytest.raises(ValueError, match='instances=13 exceeds the 12 drawings'):
    _sample(_bank(), num_classes=2, instances=13)
  with pytest.raises(ValueError, match='uint8'):
    _sample(_bank().astype(jnp.float32), num_classes=2, instances=2)
  with pytest.raises(ValueError, match='max_shift must be in'):
    make_sequence_sampler(image_size=4, max_shift=4)


def test_accuracy_by_instance_on_a_hand_made_episode():
  # Class 0 at steps 0, 2, 5 and class 1 at steps 1, 3, 4; right at 1, 2, 4, 5.
  labels = jnp.array([[0, 1, 0, 1, 1, 0]])
  predictions = jnp.array([[1, 1, 0, 0, 1, 0]])
  accuracy = accuracy_by_instance(predictions, labels, 2, 4)
  np.testing.assert_allclose(accuracy[0, :3], [0.5, 0.5, 1.0])
  assert np.isnan(accuracy[0, 3])  # no class was shown a 4th time


def test_accuracy_by_instance_refuses_mismatched_shapes():
  with pytest.raises(ValueError, match='both be \\(episodes, steps\\)'):
    accuracy_by_instance(jnp.zeros((2, 5), int), jnp.zeros((2, 6), int), 2, 3)
