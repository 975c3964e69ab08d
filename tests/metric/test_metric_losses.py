"""Metric-learning losses and their mining, against hand-made cases and numpy loops."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta.metric import losses as mlosses

# Points on a line, with every mining answer worked out by hand below. Classes A=0,
# B=1, C=2; C has a single member, so it is never an anchor with a positive.
LINE_X = np.array([0.0, 1.0, 2.5, 4.5, 7.0, 20.0, 30.0])
LINE_Y = np.array([0, 0, 1, 0, 1, 2, 1], np.int32)


def on_a_line(x):
  return np.stack([x, np.zeros_like(x)], axis=1)


def numpy_distances(e, squared):
  d2 = np.array([[np.sum((a - b) ** 2) for b in e] for a in e])
  return d2 if squared else np.sqrt(d2)


def random_batch(n=9, dim=3, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, dim)), rng.integers(0, classes, size=n).astype(np.int32)


@pytest.mark.parametrize('squared', [True, False])
def test_pairwise_distances_match_numpy(x64, squared):
  e, _ = random_batch()
  other = e[:4] + 1.0
  got = mlosses.pairwise_distances(jnp.asarray(e), squared)
  np.testing.assert_allclose(got, numpy_distances(e, squared), rtol=1e-12)
  assert np.all(np.diag(got) == 0.0)
  cross = mlosses.pairwise_distances(jnp.asarray(e), squared, other=jnp.asarray(other))
  d2 = ((e[:, None] - other[None]) ** 2).sum(-1)
  np.testing.assert_allclose(cross, d2 if squared else np.sqrt(d2), rtol=1e-12)


def test_pairwise_distance_gradients_are_finite_at_identical_points():
  e = jnp.array([[1.0, 2.0], [1.0, 2.0], [0.0, -1.0]])  # rows 0 and 1 coincide
  for squared in (True, False):
    grad = jax.grad(lambda e, s=squared: jnp.sum(mlosses.pairwise_distances(e, s)))(e)
    chex.assert_tree_all_finite(grad)
  # Away from the coincident rows the gradient is the usual unit vector.
  grad = jax.grad(lambda e: mlosses.pairwise_distances(e)[0, 2])(e)
  np.testing.assert_allclose(grad[0], (e[0] - e[2]) / jnp.linalg.norm(e[0] - e[2]))
  np.testing.assert_array_equal(grad[1], 0.0)


def test_triplet_loss_is_zero_iff_every_margin_holds(x64):
  anchor = np.array([[0.0, 0.0], [1.0, 1.0]])
  positive = anchor + np.array([[0.1, 0.0], [0.0, 0.2]])
  far = anchor + np.array([[3.0, 0.0], [0.0, -2.0]])
  for squared in (True, False):
    loss = functools.partial(mlosses.triplet_loss, margin=1.0, squared=squared)
    assert loss(anchor, positive, far) == 0.0
    # The second negative is now closer than its positive plus the margin.
    near = far.copy()
    near[1] = anchor[1] + np.array([0.0, 0.5])
    power = 1.0 if squared else 0.5
    d = lambda a, b, p=power: ((a - b) ** 2).sum(-1) ** p  # noqa: E731
    expected = np.maximum(d(anchor, positive) - d(anchor, near) + 1.0, 0.0).mean()
    assert expected > 0
    np.testing.assert_allclose(loss(anchor, positive, near), expected, rtol=1e-12)


def test_batch_hard_mining_picks_the_hardest_pairs_on_a_line():
  d = mlosses.pairwise_distances(jnp.asarray(on_a_line(LINE_X)))
  mined = mlosses.batch_hard_mining(d, jnp.asarray(LINE_Y))
  # Anchor 0 (A at 0): positives 1 (d=1), 3 (4.5); nearest negative 2 (2.5).
  # Anchor 2 (B at 2.5): positives 4 (4.5), 6 (27.5); negatives 0 (2.5), 1 (1.5),
  # 3 (2), 5 (17.5). Anchor 5 (the lone C) has no positive.
  np.testing.assert_array_equal(mined.valid, [1, 1, 1, 1, 1, 0, 1])
  valid = np.asarray(mined.valid)
  np.testing.assert_array_equal(
    np.asarray(mined.positive_index)[valid], [3, 3, 6, 0, 6, 2]
  )
  np.testing.assert_array_equal(
    np.asarray(mined.negative_index)[valid], [2, 2, 1, 2, 3, 5]
  )


def numpy_batch_hard(e, y, margin, squared):
  d = numpy_distances(e, squared)
  terms = []
  for a in range(len(y)):
    pos = [d[a, p] for p in range(len(y)) if p != a and y[p] == y[a]]
    neg = [d[a, n] for n in range(len(y)) if y[n] != y[a]]
    if pos and neg:
      terms.append(max(max(pos) - min(neg) + margin, 0.0))
  return np.mean(terms) if terms else 0.0


@pytest.mark.parametrize('squared', [True, False])
def test_batch_hard_triplet_loss_matches_numpy(x64, squared):
  e, y = on_a_line(LINE_X / 10.0), LINE_Y
  got = mlosses.batch_hard_triplet_loss(e, y, margin=0.5, squared=squared)
  expected = numpy_batch_hard(e, y, 0.5, squared)
  assert expected > 0
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  for seed in range(3):
    e, y = random_batch(seed=seed)
    got = mlosses.batch_hard_triplet_loss(e, y, margin=1.0, squared=squared)
    np.testing.assert_allclose(got, numpy_batch_hard(e, y, 1.0, squared), rtol=1e-12)


def test_semi_hard_mining_picks_the_right_negatives_on_a_line():
  d = mlosses.pairwise_distances(jnp.asarray(on_a_line(LINE_X)))
  mined = mlosses.semi_hard_mining(d, jnp.asarray(LINE_Y))
  # (anchor, positive): expected negative, found semi-hard? Worked out by hand.
  expected = {
    (0, 1): (2, True),  # d_ap 1: negatives at 2.5, 7, 20, 30 -> 2.5
    (0, 3): (4, True),  # d_ap 4.5 -> 7
    (1, 0): (2, True),  # d_ap 1: negatives at 1.5, 6, 19, 29 -> 1.5
    (1, 3): (4, True),  # d_ap 3.5 -> 6
    (3, 0): (5, True),  # d_ap 4.5: negatives at 2, 2.5, 15.5, 25.5 -> 15.5
    (3, 1): (5, True),  # d_ap 3.5 -> 15.5
    (2, 4): (5, True),  # d_ap 4.5: negatives at 2.5, 1.5, 2, 17.5 -> 17.5
    (2, 6): (5, False),  # d_ap 27.5 beyond every negative: the farthest, 17.5
    (4, 2): (1, True),  # d_ap 4.5: negatives at 7, 6, 2.5, 13 -> 6
    (4, 6): (5, False),  # d_ap 23 beyond every negative: the farthest, 13
    (6, 2): (1, True),  # d_ap 27.5: negatives at 30, 29, 25.5, 10 -> 29
    (6, 4): (3, True),  # d_ap 23 -> 25.5
  }
  valid = np.asarray(mined.valid)
  assert {tuple(ap) for ap in np.argwhere(valid)} == set(expected)
  for (a, p), (n, semi_hard) in expected.items():
    assert mined.negative_index[a, p] == n, (a, p)
    assert mined.semi_hard[a, p] == semi_hard, (a, p)


def numpy_semi_hard(e, y, margin, squared):
  """A direct loop over tf-addons' ``triplet_semihard_loss`` semantics."""
  d = numpy_distances(e, squared)
  terms = []
  for a in range(len(y)):
    neg = [d[a, n] for n in range(len(y)) if y[n] != y[a]]
    for p in range(len(y)):
      if p == a or y[p] != y[a] or not neg:
        continue
      farther = [x for x in neg if x > d[a, p]]
      d_an = min(farther) if farther else max(neg)
      terms.append(max(d[a, p] - d_an + margin, 0.0))
  return np.mean(terms) if terms else 0.0


@pytest.mark.parametrize('squared', [True, False])
def test_semi_hard_triplet_loss_matches_numpy(x64, squared):
  for seed in range(4):
    e, y = random_batch(n=10, seed=seed)
    got = mlosses.batch_semi_hard_triplet_loss(e, y, margin=1.0, squared=squared)
    np.testing.assert_allclose(got, numpy_semi_hard(e, y, 1.0, squared), rtol=1e-12)
  e, y = on_a_line(LINE_X / 10.0), LINE_Y
  got = mlosses.batch_semi_hard_triplet_loss(e, y, margin=0.5, squared=squared)
  np.testing.assert_allclose(got, numpy_semi_hard(e, y, 0.5, squared), rtol=1e-12)


def test_triplet_losses_without_triplets_are_zero():
  e = jnp.arange(6.0).reshape(3, 2)
  one_class = jnp.zeros(3, jnp.int32)
  all_distinct = jnp.arange(3)
  for loss in (mlosses.batch_hard_triplet_loss, mlosses.batch_semi_hard_triplet_loss):
    for labels in (one_class, all_distinct):
      assert loss(e, labels) == 0.0


def test_contrastive_loss_matches_numpy(x64):
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(6, 3)), 0.4 * rng.normal(size=(6, 3))
  same = np.array([1, 0, 1, 0, 0, 1])
  d = np.linalg.norm(a - b, axis=1)
  expected = np.mean(same * d**2 + (1 - same) * np.maximum(1.5 - d, 0.0) ** 2)
  got = mlosses.contrastive_loss(a, b, same, margin=1.5)
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  np.testing.assert_allclose(
    mlosses.contrastive_loss(a, b, same.astype(bool), margin=1.5), expected, rtol=1e-12
  )


def test_pairwise_contrastive_loss_is_balanced_over_distinct_pairs(x64):
  e, y = random_batch(n=7, seed=2)
  d = numpy_distances(e, squared=False)
  same, different = [], []
  for i in range(7):
    for j in range(7):
      if i != j:
        if y[i] == y[j]:
          same.append(d[i, j] ** 2)
        else:
          different.append(max(2.0 - d[i, j], 0.0) ** 2)
  expected = 0.5 * np.mean(same) + 0.5 * np.mean(different)
  got = mlosses.pairwise_contrastive_loss(e, y, margin=2.0)
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_center_loss_and_its_gradient_match_numpy(x64):
  e, y = random_batch(n=8, dim=4, classes=3, seed=3)
  centers = {k: e[y == k].mean(axis=0) for k in set(y)}
  c = np.stack([centers[k] for k in y])
  expected = 0.5 * np.mean(np.sum((e - c) ** 2, axis=1))
  for num_classes in (None, 3, 5):
    got = mlosses.center_loss(e, y, num_classes=num_classes)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
  # The gradient through the batch centers vanishes: d/dx_i = (x_i - c_{y_i}) / n.
  grad = jax.grad(mlosses.center_loss)(jnp.asarray(e), y)
  np.testing.assert_allclose(grad, (e - c) / len(y), rtol=1e-10, atol=1e-14)


EMBEDDING_LOSSES = {
  'pairwise_contrastive': mlosses.pairwise_contrastive_loss,
  'batch_hard': mlosses.batch_hard_triplet_loss,
  'batch_hard_squared': functools.partial(
    mlosses.batch_hard_triplet_loss, squared=True
  ),
  'semi_hard': mlosses.batch_semi_hard_triplet_loss,
  'semi_hard_plain': functools.partial(
    mlosses.batch_semi_hard_triplet_loss, squared=False
  ),
  'center': mlosses.center_loss,
}


@pytest.mark.parametrize('name', sorted(EMBEDDING_LOSSES))
def test_gradients_are_finite_even_with_duplicate_embeddings(name):
  loss = EMBEDDING_LOSSES[name]
  e, y = random_batch(n=8, dim=3, seed=4)
  e[3] = e[1]  # a coincident pair, in whichever classes they fall
  e[5] = e[6]
  value, grad = jax.value_and_grad(loss)(jnp.asarray(e, jnp.float32), y)
  chex.assert_tree_all_finite((value, grad))
  assert float(jnp.abs(grad).sum()) > 0.0


def test_pairwise_losses_give_finite_gradients():
  rng = np.random.default_rng(5)
  a, b, n = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(3))
  same = jnp.array([1, 0, 1, 0])
  grads = jax.grad(
    lambda a, b, n: (
      mlosses.contrastive_loss(a, b, same)
      + mlosses.triplet_loss(a, b, n, margin=5.0)
      + mlosses.triplet_loss(a, b, n, margin=5.0, squared=False)
    ),
    argnums=(0, 1, 2),
  )(a, a.at[1].set(b[1]), n)  # pair 0 coincides
  chex.assert_tree_all_finite(grads)
