"""NTM addressing, reading and writing against hand computations on tiny memories."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.memory import addressing

# Rows of norm 1 or more: the cosine's epsilon (1e-8 under the squared norms)
# moves their similarities by less than 1e-8.
MEMORY = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 1.0]])


def test_cosine_similarity_by_hand(x64):
  got = addressing.cosine_similarity(MEMORY, np.array([1.0, 0.0]))
  # [3, 4] . [1, 0] / 5 = 0.6; [0, 2] is orthogonal; [1, 1] is at 45 degrees.
  np.testing.assert_allclose(got, [0.6, 0.0, 1 / np.sqrt(2)], rtol=1e-7, atol=1e-12)


def test_content_weights_by_hand(x64):
  got = addressing.content_weights(MEMORY, np.array([2.0, 0.0]), 2.0)
  logits = 2.0 * np.array([0.6, 0.0, 1 / np.sqrt(2)])  # beta times the cosines
  np.testing.assert_allclose(got, np.exp(logits) / np.exp(logits).sum(), rtol=1e-7)


def test_zero_row_and_zero_key_give_no_nan(x64):
  memory = np.array([[0.0, 0.0], [1.0, 2.0], [0.5, -1.0]])

  def loss(memory, key):
    return addressing.content_weights(memory, key, 3.0) @ np.array([1.0, 2.0, 3.0])

  weights = addressing.content_weights(memory, np.array([1.0, 1.0]), 3.0)
  assert np.all(np.isfinite(weights))
  # The zero row's similarity is 0, so its weight is exp(0) over the partition.
  sims = np.array([0.0, 3 / np.sqrt(10), -0.5 / np.sqrt(2.5)])
  np.testing.assert_allclose(
    weights, np.exp(3 * sims) / np.exp(3 * sims).sum(), rtol=1e-7
  )
  for key in (np.array([1.0, 1.0]), np.zeros(2)):
    grads = jax.grad(loss, argnums=(0, 1))(memory, key)
    assert all(np.all(np.isfinite(g)) for g in grads)
  uniform = addressing.content_weights(memory, np.zeros(2), 3.0)
  np.testing.assert_allclose(uniform, np.full(3, 1 / 3), rtol=1e-12)


def test_interpolate_by_hand():
  got = addressing.interpolate(
    jnp.array([0.5, 0.5, 0.0]), jnp.array([0.0, 0.0, 1.0]), 0.25
  )
  np.testing.assert_allclose(got, [0.125, 0.125, 0.75], rtol=1e-6)


def test_shift_by_hand():
  w = jnp.array([0.1, 0.2, 0.3, 0.4])
  s = jnp.array([0.2, 0.5, 0.3])  # offsets -1, 0, +1
  # w~_i = s_-1 w_{i+1} + s_0 w_i + s_+1 w_{i-1}, indices mod 4; e.g.
  # w~_0 = 0.2 * 0.2 + 0.5 * 0.1 + 0.3 * 0.4 = 0.21.
  np.testing.assert_allclose(
    addressing.shift(w, s), [0.21, 0.19, 0.29, 0.31], rtol=1e-6
  )
  # All the mass on offset +1 moves every weight one slot forward, circularly.
  np.testing.assert_allclose(
    addressing.shift(w, jnp.array([0.0, 0.0, 1.0])), [0.4, 0.1, 0.2, 0.3]
  )


def test_shift_matches_numpy_roll_sum(x64):
  rng = np.random.default_rng(0)
  w = rng.dirichlet(np.ones(7))
  s = rng.dirichlet(np.ones(5))  # offsets -2..2
  expected = sum(s[j] * np.roll(w, j - 2) for j in range(5))
  np.testing.assert_allclose(addressing.shift(w, s), expected, rtol=1e-12)

  # And as the convolution sum itself: w~_i = sum_j w_j s(i - j).
  def offset(i, j):  # i - j as an offset in -3..3, mod 7
    return (i - j + 3) % 7 - 3

  direct = [
    sum(w[j] * s[offset(i, j) + 2] for j in range(7) if abs(offset(i, j)) <= 2)
    for i in range(7)
  ]
  np.testing.assert_allclose(expected, direct, rtol=1e-12)


def test_sharpen_matches_formula(x64):
  w = np.array([0.1, 0.2, 0.3, 0.4])
  np.testing.assert_allclose(
    addressing.sharpen(w, 2.0), np.array([0.01, 0.04, 0.09, 0.16]) / 0.3, rtol=1e-12
  )
  gamma = 2.7
  np.testing.assert_allclose(
    addressing.sharpen(w, gamma), w**gamma / np.sum(w**gamma), rtol=1e-12
  )


def test_sharpen_is_safe_where_the_naive_formula_fails():
  # In float32 every w^10 underflows to 0, so w^10 / sum w^10 is 0 / 0.
  w = jnp.array([1e-30, 2e-30], jnp.float32)
  assert np.all(np.isnan(w**10 / jnp.sum(w**10)))
  # float32's log(1e-30), times 10, is good to about 1e-5 relative.
  np.testing.assert_allclose(
    addressing.sharpen(w, 10.0), [1 / 1025, 1024 / 1025], rtol=5e-5
  )
  # A zero weight stays (about) zero and leaves the gradients finite.
  zero = jnp.array([0.0, 0.5, 0.5])
  np.testing.assert_allclose(addressing.sharpen(zero, 3.0), [0.0, 0.5, 0.5], atol=1e-30)
  grads = jax.grad(lambda w, g: addressing.sharpen(w, g)[1], argnums=(0, 1))(zero, 3.0)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_address_composes_the_four_steps(x64):
  memory = MEMORY
  previous = np.array([0.0, 1.0, 0.0])
  key, beta, g, s, gamma = (
    np.array([1.0, 0.0]),
    2.0,
    0.6,
    np.array([0.1, 0.7, 0.2]),
    1.5,
  )
  logits = beta * np.array([0.6, 0.0, 1 / np.sqrt(2)])
  content = np.exp(logits) / np.exp(logits).sum()
  gated = g * content + (1 - g) * previous
  shifted = np.array(
    [
      s[0] * gated[(i + 1) % 3] + s[1] * gated[i] + s[2] * gated[(i - 1) % 3]
      for i in range(3)
    ]
  )
  expected = shifted**gamma / np.sum(shifted**gamma)
  got = addressing.address(memory, previous, key, beta, g, s, gamma)
  np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_read_by_hand():
  w = jnp.array([0.2, 0.3, 0.5])
  # 0.2 [3, 4] + 0.3 [0, 2] + 0.5 [1, 1] = [1.1, 1.9]
  np.testing.assert_allclose(
    addressing.read(jnp.asarray(MEMORY), w), [1.1, 1.9], rtol=1e-6
  )


def test_write_by_hand():
  w = jnp.array([1.0, 0.5, 0.0])
  erase, add = jnp.array([1.0, 0.5]), jnp.array([2.0, -1.0])
  expected = [
    [3 * 0 + 2.0, 4 * 0.5 - 1.0],  # w = 1: erase fully (x0) and by half, add a
    [0 * 0.5 + 1.0, 2 * 0.75 - 0.5],  # w = 0.5: keep 1 - 0.5 e, add 0.5 a
    [1.0, 1.0],  # w = 0: unchanged
  ]
  got = addressing.write(jnp.asarray(MEMORY), w, erase, add)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_write_heads_erases_then_adds():
  memory = jnp.asarray(MEMORY)
  w = jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
  erase = jnp.array([[0.5, 0.0], [1.0, 1.0]])
  add = jnp.array([[1.0, 1.0], [0.0, 2.0]])
  expected = [
    [3 * 0.5 + 1, 4 + 1],  # head 0 only
    [0 + 0, 0 + 2],  # head 1 only: erased fully
    # both: keep (1 - 0.5 * 0.5)(1 - 0.5 * 1) = 0.375 and 0.5; add 0.5 (a0 + a1)
    [0.375 + 0.5, 0.5 + 1.5],
  ]
  np.testing.assert_allclose(
    addressing.write_heads(memory, w, erase, add), expected, rtol=1e-6
  )
  # Writing the heads one after the other would erase head 0's addition to row 2.
  sequential = addressing.write(
    addressing.write(memory, w[0], erase[0], add[0]), w[1], erase[1], add[1]
  )
  assert not np.allclose(sequential[2], expected[2])


@pytest.mark.parametrize(
  'call, message',
  [
    (lambda: addressing.shift(jnp.ones(4) / 4, jnp.ones(2) / 2), 'odd number'),
    (lambda: addressing.shift(jnp.ones((2, 4)), jnp.ones(3)), 'jax.vmap'),
    (
      lambda: addressing.cosine_similarity(jnp.ones(3), jnp.ones(3)),
      r'\(slots, width\)',
    ),
    (lambda: addressing.cosine_similarity(jnp.ones((3, 2)), jnp.ones(3)), 'key'),
    (lambda: addressing.read(jnp.ones((3, 2)), jnp.ones(4)), 'read weights'),
    (
      lambda: addressing.write(jnp.ones((3, 2)), jnp.ones(3), jnp.ones(3), jnp.ones(2)),
      'erase vector',
    ),
    (
      lambda: addressing.write_heads(
        jnp.ones((3, 2)), jnp.ones((2, 3)), jnp.ones((1, 2)), jnp.ones((2, 2))
      ),
      r'erase and add vectors \(heads, width\)',
    ),
  ],
)
def test_bad_shapes_raise(call, message):
  with pytest.raises(ValueError, match=message):
    call()
