"""Episode sampler tests on a small synthetic image bank (no real data needed)."""

import pydoc

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import TaskBatch, mean_confidence_interval
from jmeta.data import EpisodeSampler, evaluation_keys, make_episode_sampler

CHARACTERS, DRAWINGS, SIZE = 12, 20, 28
BANK = np.random.default_rng(0).integers(
  0, 256, (CHARACTERS, DRAWINGS, SIZE, SIZE), dtype=np.uint8
)
# Every (character, drawing, quarter turns) image of the bank, by its bytes.
LOOKUP = {
  np.rot90(BANK[c, d], r).tobytes(): (c, d, r)
  for c in range(CHARACTERS)
  for d in range(DRAWINGS)
  for r in range(4)
}


def identify(inputs: np.ndarray) -> np.ndarray:
  """float inputs ``(..., 28, 28, 1)`` -> int ``(..., 3)`` of (character, drawing, r)."""
  pixels = np.rint(np.asarray(inputs)[..., 0] * 255).astype(np.uint8)
  flat = pixels.reshape(-1, SIZE, SIZE)
  ids = np.array([LOOKUP[image.tobytes()] for image in flat])
  return ids.reshape(pixels.shape[:-2] + (3,))


def sampler(rotation='none', n_way=5, k_shot=2, q_query=3) -> EpisodeSampler:
  return make_episode_sampler(
    jnp.asarray(BANK), n_way=n_way, k_shot=k_shot, q_query=q_query, rotation=rotation
  )


def per_class(batch: TaskBatch, n_way, k_shot, q_query):
  """(support ids, query ids), each ``(tasks, n_way, shots, 3)``."""
  support = identify(batch.support_inputs).reshape(-1, n_way, k_shot, 3)
  query = identify(batch.query_inputs).reshape(-1, n_way, q_query, 3)
  return support, query


@pytest.mark.parametrize('rotation', ['none', 'classes', 'random'])
def test_shapes_dtypes_and_range(rotation):
  batch = sampler(rotation, n_way=5, k_shot=2, q_query=3).sample(jax.random.key(0), 4)
  assert isinstance(batch, TaskBatch)
  assert batch.support_inputs.shape == (4, 10, SIZE, SIZE, 1)
  assert batch.query_inputs.shape == (4, 15, SIZE, SIZE, 1)
  assert batch.support_targets.shape == (4, 10)
  assert batch.query_targets.shape == (4, 15)
  assert batch.support_inputs.dtype == jnp.float32
  assert batch.query_inputs.dtype == jnp.float32
  assert batch.support_targets.dtype == jnp.int32
  assert batch.query_targets.dtype == jnp.int32
  for x in (batch.support_inputs, batch.query_inputs):
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize('rotation', ['none', 'classes', 'random'])
def test_labels_run_zero_to_n_minus_one(rotation):
  batch = sampler(rotation, n_way=4, k_shot=3, q_query=2).sample(jax.random.key(1), 6)
  for labels, shots in ((batch.support_targets, 3), (batch.query_targets, 2)):
    expected = np.repeat(np.arange(4), shots)
    np.testing.assert_array_equal(np.asarray(labels), np.tile(expected, (6, 1)))


@pytest.mark.parametrize('rotation', ['none', 'classes', 'random'])
def test_classes_distinct_and_support_query_disjoint(rotation):
  n_way, k_shot, q_query = 6, 3, 5
  batch = sampler(rotation, n_way, k_shot, q_query).sample(jax.random.key(2), 32)
  support, query = per_class(batch, n_way, k_shot, q_query)
  both = np.concatenate([support, query], axis=2)  # (tasks, n_way, shots, 3)
  for task in both:
    # One class = one character (and one rotation) for all its images.
    assert (task[:, :, 0] == task[:, :1, 0]).all()
    assert (task[:, :, 2] == task[:, :1, 2]).all()
    classes = {(int(c[0, 0]), int(c[0, 2])) for c in task}
    assert len(classes) == n_way  # distinct classes
    if rotation != 'classes':
      assert len({int(c[0, 0]) for c in task}) == n_way  # distinct characters
    for images in task:  # support and query drawings never overlap
      assert len(set(images[:, 1].tolist())) == k_shot + q_query
  if rotation == 'none':
    assert (both[..., 2] == 0).all()


def test_none_returns_bank_images_scaled():
  batch = sampler('none', 3, 1, 1).sample(jax.random.key(3), 2)
  ids = identify(batch.support_inputs)
  for task in range(2):
    for i, (c, d, _) in enumerate(ids[task]):
      np.testing.assert_allclose(
        np.asarray(batch.support_inputs[task, i, ..., 0]),
        BANK[c, d].astype(np.float32) / 255.0,
        rtol=1e-6,
      )


def test_classes_rotation_yields_rotated_copies():
  s = sampler('classes', n_way=5, k_shot=1, q_query=1)
  assert s.num_classes == CHARACTERS * 4
  batch = s.sample(jax.random.key(4), 64)
  ids = identify(batch.support_inputs)  # found among np.rot90(BANK[c, d], r)
  for (c, d, r), image in zip(
    ids.reshape(-1, 3), batch.support_inputs.reshape(-1, 28, 28)
  ):
    expected = np.rot90(BANK[c, d], r).astype(np.float32) / 255.0
    np.testing.assert_allclose(np.asarray(image), expected, rtol=1e-6)
  assert set(ids[..., 2].ravel().tolist()) == {0, 1, 2, 3}
  # The same character rotated differently can appear as two classes of one task.
  pool = sampler('classes', n_way=CHARACTERS * 4, k_shot=1, q_query=1)
  full = identify(pool.sample(jax.random.key(5), 1).support_inputs)[0]
  assert {(c, r) for c, _, r in full.tolist()} == {
    (c, r) for c in range(CHARACTERS) for r in range(4)
  }


def test_random_rotation_is_per_class_per_task():
  n_way, k_shot, q_query = 5, 2, 2
  batch = sampler('random', n_way, k_shot, q_query).sample(jax.random.key(6), 64)
  support, query = per_class(batch, n_way, k_shot, q_query)
  assert (support[..., 2] == query[..., :1, 2]).all()  # support and query agree
  assert set(support[..., 2].ravel().tolist()) == {0, 1, 2, 3}
  # Rotations vary between classes of a task, not just between tasks.
  assert any(len(set(task[:, 0, 2].tolist())) > 1 for task in support)


def test_every_character_and_drawing_gets_sampled():
  batch = sampler('none', 5, 1, 1).sample(jax.random.key(7), 400)
  ids = identify(batch.support_inputs).reshape(-1, 3)
  assert set(ids[:, 0].tolist()) == set(range(CHARACTERS))
  assert set(ids[:, 1].tolist()) == set(range(DRAWINGS))


@pytest.mark.parametrize('rotation', ['none', 'classes', 'random'])
def test_same_key_same_episode_bitwise(rotation):
  s = sampler(rotation)
  a = s.sample(jax.random.key(8), 8)
  b = s.sample(jax.random.key(8), 8)
  c = s.sample(jax.random.key(9), 8)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert not np.array_equal(np.asarray(a.support_inputs), np.asarray(c.support_inputs))
  # Rebuilding the sampler does not change the episodes of a key.
  d = sampler(rotation).sample(jax.random.key(8), 8)
  np.testing.assert_array_equal(np.asarray(a.query_inputs), np.asarray(d.query_inputs))


def test_runs_under_jit_without_retracing():
  s = sampler('classes', 5, 1, 3)
  eager = s.sample(jax.random.key(10), 4)
  jitted = jax.jit(s.sample, static_argnums=1)
  chex.assert_trees_all_equal(jitted(jax.random.key(10), 4), eager)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(bank, key):
    batch = s.sample_from(bank, key, 4)
    return batch.support_inputs.mean() + batch.query_targets.sum()

  bank = jnp.asarray(BANK)
  first = step(bank, jax.random.key(10))
  step(bank, jax.random.key(11))  # a new key must not retrace
  expected = eager.support_inputs.mean() + eager.query_targets.sum()
  np.testing.assert_allclose(float(first), float(expected), rtol=1e-6)


@pytest.mark.parametrize(
  'kwargs, message',
  [
    (dict(n_way=CHARACTERS + 1, k_shot=1, q_query=1), 'n_way=13 exceeds the 12'),
    (
      dict(n_way=CHARACTERS * 4 + 1, k_shot=1, q_query=1, rotation='classes'),
      'n_way=49 exceeds the 48',
    ),
    (
      dict(n_way=CHARACTERS + 1, k_shot=1, q_query=1, rotation='random'),
      'exceeds the 12',
    ),
    (dict(n_way=5, k_shot=10, q_query=11), 'k_shot \\+ q_query = 10 \\+ 11 = 21'),
    (dict(n_way=0, k_shot=1, q_query=1), 'n_way must be a positive int'),
    (dict(n_way=5, k_shot=0, q_query=1), 'k_shot must be a positive int'),
    (dict(n_way=5, k_shot=1, q_query=-2), 'q_query must be a positive int'),
    (dict(n_way=2.5, k_shot=1, q_query=1), 'n_way must be a positive int'),
    (dict(n_way=True, k_shot=1, q_query=1), 'n_way must be a positive int'),
    (dict(n_way=5, k_shot=1, q_query=1, rotation='flip'), 'rotation must be one of'),
  ],
)
def test_impossible_episodes_raise(kwargs, message):
  with pytest.raises(ValueError, match=message):
    make_episode_sampler(jnp.asarray(BANK), **kwargs)


def test_largest_possible_episode_is_allowed():
  s = make_episode_sampler(
    jnp.asarray(BANK), n_way=CHARACTERS * 4, k_shot=19, q_query=1, rotation='classes'
  )
  batch = s.sample(jax.random.key(12), 1)
  assert batch.support_inputs.shape == (1, CHARACTERS * 4 * 19, SIZE, SIZE, 1)


def test_bad_image_banks_raise():
  with pytest.raises(ValueError, match='uint8'):
    make_episode_sampler(jnp.asarray(BANK, jnp.float32), n_way=2, k_shot=1, q_query=1)
  with pytest.raises(ValueError, match='characters, drawings, height, width'):
    make_episode_sampler(jnp.asarray(BANK[0]), n_way=2, k_shot=1, q_query=1)
  with pytest.raises(ValueError, match='num_tasks must be a positive int'):
    sampler().sample(jax.random.key(0), 0)


def test_evaluation_keys_are_fixed():
  a, b, c = evaluation_keys(0, 600), evaluation_keys(0, 600), evaluation_keys(1, 600)
  assert a.shape == (600,)
  keys = jax.random.key_data
  np.testing.assert_array_equal(np.asarray(keys(a)), np.asarray(keys(b)))
  assert not np.array_equal(np.asarray(keys(a)), np.asarray(keys(c)))
  assert len({tuple(k) for k in np.asarray(keys(a)).tolist()}) == 600
  # One episode per key, the same on every run; summarized with the shared helper.
  s = sampler('none', 5, 1, 1)
  episodes = jax.vmap(lambda k: s.sample_from(jnp.asarray(BANK), k, 1))(a[:8])
  again = jax.vmap(lambda k: s.sample_from(jnp.asarray(BANK), k, 1))(b[:8])
  chex.assert_trees_all_equal(episodes, again)
  mean, half = mean_confidence_interval(
    np.asarray(episodes.support_inputs).mean((1, 2, 3, 4, 5))
  )
  assert np.isfinite(mean) and half > 0


def help_text(obj) -> str:
  """What ``help(obj)`` prints, with line breaks and pydoc's '|' margins removed."""
  text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
  return ' '.join(word for word in text.split() if word != '|')


def test_help_states_the_dtypes_and_ranges_the_sampler_returns():
  n_way = 5
  batch = sampler('random', n_way=n_way, k_shot=2, q_query=3).sample(
    jax.random.key(3), 4
  )
  images = {batch.support_inputs.dtype, batch.query_inputs.dtype}
  labels = {batch.support_targets.dtype, batch.query_targets.dtype}
  assert len(images) == len(labels) == 1
  (image_dtype,), (label_dtype,) = images, labels
  # The values fill the stated ranges: images [0, 1] (not [0, 255]), labels [0, n_way).
  for x in (batch.support_inputs, batch.query_inputs):
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # the bank has 0 and 255
  for y in (batch.support_targets, batch.query_targets):
    assert sorted(np.unique(y).tolist()) == list(range(n_way))
  for obj in (make_episode_sampler, EpisodeSampler):
    text = help_text(obj)
    assert f'{image_dtype} in [0, 1]' in text, obj
    assert f'{label_dtype} in ``[0, n_way)``' in text, obj
