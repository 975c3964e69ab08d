"""The LRUA memory of Santoro et al. (2016) against a numpy reference of its equations."""

import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import memory


def numpy_read_weights(mem, key, eps=1e-8):
  """softmax_i of the cosine of ``key`` with row i, norms guarded as jmeta's are."""
  rows = mem / np.sqrt(np.sum(mem**2, axis=1, keepdims=True) + eps)
  sims = rows @ (key / np.sqrt(np.sum(key**2) + eps))
  return np.exp(sims) / np.exp(sims).sum()


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize(
  'usage, n, slots',
  [
    ([0.5, 0.1, 0.9, 0.1, 0.3], 1, [1]),  # a tie for smallest: the lower index
    ([0.5, 0.1, 0.9, 0.1, 0.3], 2, [1, 3]),
    ([0.5, 0.1, 0.9, 0.1, 0.3], 3, [1, 3, 4]),
    ([0.2, 0.2, 0.2, 1.0], 2, [0, 1]),
  ],
)
def test_least_used_weights_mark_the_n_smallest(usage, n, slots):
  expected = np.zeros(len(usage))
  expected[slots] = 1
  got = memory.least_used_weights(jnp.array(usage), n)
  np.testing.assert_array_equal(got, expected)


def test_write_lands_in_the_least_used_slot(x64):
  rng = np.random.default_rng(0)
  mem = rng.normal(size=(5, 3)) + 2.0  # no zero entries to hide a missed zeroing
  usage = np.array([0.5, 0.4, 0.9, 0.05, 0.3])  # slot 3 is least used
  previous_read = np.eye(5)[[1]]  # the one head read slot 1 last step
  key, alpha, gamma = np.array([0.3, -0.2, 0.5]), 0.4, 0.9
  access = memory.lrua(5, 3, heads=1, gamma=gamma)
  state = memory.LRUAState(mem, usage, previous_read, np.zeros((1, 5)))
  reads, new = access.update(state, key[None], np.array([alpha]))

  g = sigmoid(alpha)
  expected = mem.copy()
  expected[3] = (1 - g) * key  # zeroed, then written with weight 1 - sigma(alpha)
  expected[1] = mem[1] + g * key  # where the head read last step
  np.testing.assert_allclose(new.memory, expected, rtol=1e-12)
  write_weights = np.array([0, g, 0, 1 - g, 0])
  np.testing.assert_allclose(new.write_weights, write_weights[None], rtol=1e-12)
  read_weights = numpy_read_weights(expected, key)
  np.testing.assert_allclose(new.read_weights, read_weights[None], rtol=1e-12)
  np.testing.assert_allclose(reads, (read_weights @ expected)[None], rtol=1e-12)
  np.testing.assert_allclose(
    new.usage, gamma * usage + read_weights + write_weights, rtol=1e-12
  )


def test_two_heads_share_the_least_used_slots_and_zero_only_one(x64):
  rng = np.random.default_rng(1)
  mem = rng.normal(size=(5, 2)) + 2.0
  usage = np.array([0.2, 0.6, 0.7, 0.1, 0.8])  # least used: slot 3, then slot 0
  previous_read = np.array([[0, 0, 1, 0, 0], [0.5, 0.5, 0, 0, 0]], float)
  keys = np.array([[1.0, -0.5], [0.2, 0.4]])
  values = np.array([[0.3, 0.7], [-0.6, 0.1]])
  alpha = np.array([0.0, 2.0])
  access = memory.lrua(5, 2, heads=2, gamma=0.95)
  state = memory.LRUAState(mem, usage, previous_read, np.zeros((2, 5)))
  _, new = access.update(state, keys, alpha, values)

  g0, g1 = sigmoid(0.0), sigmoid(2.0)
  expected = mem.copy()
  expected[3] = (1 - g0) * values[0] + (1 - g1) * values[1]  # old content gone
  expected[0] = mem[0] + (1 - g0) * values[0] + (0.5 * g1 + 1 - g1) * values[1]
  expected[1] = mem[1] + 0.5 * g1 * values[1]
  expected[2] = mem[2] + g0 * values[0]
  np.testing.assert_allclose(new.memory, expected, rtol=1e-12)
  read_weights = np.stack([numpy_read_weights(expected, k) for k in keys])
  np.testing.assert_allclose(new.read_weights, read_weights, rtol=1e-12)


def test_init_is_an_empty_memory_focused_on_slot_zero():
  state = memory.lrua(4, 3, heads=2).init()
  np.testing.assert_array_equal(state.memory, np.zeros((4, 3)))
  np.testing.assert_array_equal(state.usage, [1, 0, 0, 0])
  np.testing.assert_array_equal(state.read_weights, [[1, 0, 0, 0]] * 2)


@pytest.mark.parametrize(
  'kwargs, message',
  [
    ({'gamma': 0.0}, 'gamma must be > 0'),
    ({'gamma': 1.5}, r'gamma .* must be in \(0, 1\]'),
    ({'memory_slots': 0}, 'memory_slots must be a positive int'),
    ({'memory_width': 2.5}, 'memory_width must be a positive int'),
    ({'heads': 5}, 'heads=5 exceeds memory_slots=4'),
  ],
)
def test_bad_arguments_raise(kwargs, message):
  args = {'memory_slots': 4, 'memory_width': 3, 'heads': 2, 'gamma': 0.95} | kwargs
  with pytest.raises(ValueError, match=message):
    memory.lrua(**args)


def test_keys_of_the_wrong_shape_raise():
  access = memory.lrua(4, 3, heads=2)
  with pytest.raises(ValueError, match=r'keys must have shape \(2, 3\)'):
    access.update(access.init(), jnp.ones((2, 4)), jnp.zeros(2))
