"""MANN, NTM and LSTM models: scan against a step loop, vmap, finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import memory

FEATURES, CLASSES, STEPS = 2, 3, 5


def tiny_model(kind):
  sizes = {'memory_slots': 5, 'memory_width': 4, 'controller_size': 6}
  if kind == 'mann':
    return memory.mann(CLASSES, read_heads=2, **sizes)
  if kind == 'mann_values':
    return memory.mann(CLASSES, read_heads=2, separate_values=True, **sizes)
  if kind == 'ntm':
    return memory.ntm(CLASSES, read_heads=2, write_heads=2, **sizes)
  return memory.lstm(CLASSES, controller_size=6)


KINDS = ['mann', 'mann_values', 'ntm', 'lstm']


def sequence(seed, shape=(STEPS, FEATURES), dtype=np.float32):
  return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@pytest.mark.parametrize('kind', KINDS)
def test_apply_equals_a_loop_of_steps(kind):
  model = tiny_model(kind)
  seq = sequence(0)
  params = model.init(jax.random.key(0), seq)
  outputs = jax.jit(model.apply)(params, seq)
  assert outputs.shape == (STEPS, CLASSES)

  step = jax.jit(model.step)
  state, looped = model.initial_state(params), []
  for x in seq:
    state, y = step(params, state, x)
    looped.append(y)
  np.testing.assert_allclose(outputs, np.stack(looped), rtol=1e-6, atol=1e-6)
  # The outputs change along the episode: the state is carried, not reset.
  assert not np.allclose(outputs[1:], outputs[:1], atol=1e-3)


@pytest.mark.parametrize('kind', KINDS)
def test_vmap_over_episodes_equals_per_episode_calls(kind):
  model = tiny_model(kind)
  batch = sequence(1, (3, STEPS, FEATURES))
  params = model.init(jax.random.key(1), batch)
  apply = jax.jit(model.apply)
  batched = jax.jit(jax.vmap(model.apply, (None, 0)))(params, batch)
  for episode, got in zip(batch, batched):
    np.testing.assert_allclose(got, apply(params, episode), rtol=1e-6, atol=1e-6)


def tree_normal(seed, tree):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(size=x.shape).astype(x.dtype), tree)


def tree_vdot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('kind', ['mann', 'ntm'])
def test_gradient_through_the_memory_matches_finite_differences(x64, kind):
  model = tiny_model(kind)
  seq = sequence(2, dtype=np.float64)
  params = jax.tree.map(
    lambda x: x.astype(jnp.float64), model.init(jax.random.key(2), seq)
  )
  assert jax.eval_shape(model.apply, params, seq).dtype == jnp.float64
  weights = sequence(3, (STEPS, CLASSES), np.float64)
  # Central differences err by O(eps^2) (about 1e-8 relative at 1e-5 here) plus
  # O(1e-16 / eps) of rounding: 1e-6 keeps both under 1e-8.
  eps = 1e-6

  def loss(params):
    return jnp.sum(model.apply(params, seq) * weights)

  @jax.jit
  def directional_derivatives(params, direction):
    plus = jax.tree.map(lambda p, d: p + eps * d, params, direction)
    minus = jax.tree.map(lambda p, d: p - eps * d, params, direction)
    finite_difference = (loss(plus) - loss(minus)) / (2 * eps)
    return tree_vdot(jax.grad(loss)(params), direction), finite_difference

  everything = tree_normal(3, params)
  # The interface layer reaches the outputs only through the memory's reads.
  through_memory = jax.tree.map(np.zeros_like, everything)
  through_memory['interface'] = everything['interface']
  for direction in (everything, through_memory):
    analytic, finite_difference = directional_derivatives(params, direction)
    assert abs(analytic) > 1e-4
    np.testing.assert_allclose(analytic, finite_difference, rtol=1e-7, atol=1e-10)


def test_with_previous_labels_shows_each_label_one_step_late():
  inputs = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
  got = memory.with_previous_labels(inputs, np.array([2, 0, 1]), 3)
  expected = [[1, 2, 0, 0, 0], [3, 4, 0, 0, 1], [5, 6, 1, 0, 0]]
  np.testing.assert_array_equal(got, expected)


def test_with_previous_labels_concatenates_the_one_hots_of_string_labels():
  inputs = np.array([[1.0], [2.0], [3.0]], np.float32)
  strings = np.array([[2, 0], [1, 1], [0, 2]])  # labels of two symbols of 3
  got = memory.with_previous_labels(inputs, strings, 3)
  expected = [[1, 0, 0, 0, 0, 0, 0], [2, 0, 0, 1, 1, 0, 0], [3, 0, 1, 0, 0, 1, 0]]
  np.testing.assert_array_equal(got, expected)
  empty = memory.with_previous_labels(inputs[:0], strings[:0], 3)
  assert empty.shape == (0, 1 + 6)


def test_bad_episode_shapes_raise():
  model = tiny_model('mann')
  params = model.init(jax.random.key(0), sequence(0))
  with pytest.raises(ValueError, match=r'jax.vmap\(model.apply, \(None, 0\)\)'):
    model.apply(params, sequence(0, (2, STEPS, FEATURES)))
  with pytest.raises(ValueError, match='initialised for 2 features per step'):
    model.apply(params, sequence(0, (STEPS, 3)))
  with pytest.raises(ValueError, match=r'one time step of shape \(features,\)'):
    model.step(params, model.initial_state(params), sequence(0, (1, FEATURES)))
  with pytest.raises(ValueError, match='example_input must have a last axis'):
    model.init(jax.random.key(0), np.float32(1.0))
  with pytest.raises(ValueError, match='with_previous_labels takes one episode'):
    memory.with_previous_labels(sequence(0), np.zeros(STEPS + 1, int), 3)
  with pytest.raises(ValueError, match=r'\(time,\) or \(time, length\)'):
    memory.with_previous_labels(sequence(0), np.zeros((STEPS, 2, 2), int), 3)


@pytest.mark.parametrize(
  'make, message',
  [
    (lambda: memory.mann(0), 'output_size must be a positive int'),
    (lambda: memory.mann(5, memory_slots=-1), 'memory_slots must be a positive int'),
    (lambda: memory.mann(5, gamma=1.2), r'gamma .* must be in \(0, 1\]'),
    (lambda: memory.mann(5, controller_size=2.0), 'controller_size must be'),
    (lambda: memory.ntm(5, shift_width=2), 'shift_width must have an odd number'),
    (lambda: memory.ntm(5, write_heads=0), 'write_heads must be a positive int'),
    (lambda: memory.lstm(5, controller_size=0), 'controller_size must be'),
  ],
)
def test_bad_model_arguments_raise(make, message):
  with pytest.raises(ValueError, match=message):
    make()
