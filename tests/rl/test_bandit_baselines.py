"""Bandit baselines: Gittins indices against published tables and an independent
bisection, UCB1 against its formula, Thompson sampling against random."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import rl
from jmeta.rl import bandit_baselines as bb
from jmeta.rl import gittins

# Gittins indices of a Bernoulli arm with a uniform prior, after (successes,
# failures), from the tables of Gittins et al. (2011) as printed in Christian &
# Griffiths, "Algorithms to Live By" (2016), ch. 2: at discount 0.9 a 0-0 record
# has index 0.7029, 1-1 0.6346, 2-2 0.6010 and 9-1 0.8695; at 0.99, 0-0 has 0.8699.
PUBLISHED = {
  0.9: {(0, 0): 0.7029, (1, 1): 0.6346, (2, 2): 0.6010, (9, 1): 0.8695},
  0.99: {(0, 0): 0.8699},
}


@pytest.mark.parametrize('discount', sorted(PUBLISHED))
def test_gittins_table_matches_published_values(discount):
  table = gittins.gittins_index_table(discount, 10)
  for (s, f), value in PUBLISHED[discount].items():
    # The published values are rounded to 4 decimals.
    assert abs(table[s, f] - value) <= 6e-5, (s, f, table[s, f], value)


def bisection_index(s, f, discount, depth, iterations=60):
  """An independent reference: bisection on the retirement rate, each step a
  memoised recursion over the posterior states below (s, f)."""

  def advantage(lam):
    @functools.cache
    def value(a, b):
      p = (1 + a) / (2 + a + b)
      if a + b == depth:
        return max(lam, p) / (1 - discount)
      cont = p + discount * (p * value(a + 1, b) + (1 - p) * value(a, b + 1))
      return max(lam / (1 - discount), cont)

    p = (1 + s) / (2 + s + f)
    cont = p + discount * (p * value(s + 1, f) + (1 - p) * value(s, f + 1))
    return cont - lam / (1 - discount)

  lo, hi = 0.0, 1.0
  for _ in range(iterations):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if advantage(mid) > 0 else (lo, mid)
  return (lo + hi) / 2


def test_gittins_table_matches_a_bisection_per_state():
  discount, depth = 0.7, 40
  table = gittins.gittins_index_table(discount, 4, depth=depth, grid_size=4096)
  for s, f in [(0, 0), (1, 0), (0, 3), (2, 2), (3, 1)]:
    assert abs(table[s, f] - bisection_index(s, f, discount, depth)) < 1e-6


def test_gittins_index_exceeds_the_mean_and_is_monotone():
  table = gittins.gittins_index_table(0.9, 8)
  s, f = np.meshgrid(np.arange(9), np.arange(9), indexing='ij')
  inside = s + f <= 8
  mean = (1 + s) / (2 + s + f)
  assert np.all(table[inside] > mean[inside])
  assert np.all(np.isnan(table[~inside]))
  # More successes raise the index, more failures lower it.
  assert np.all(np.diff(table[:8, 0]) > 0) and np.all(np.diff(table[0, :8]) < 0)


def test_gittins_rejects_a_bad_discount():
  with pytest.raises(ValueError, match='discount must be in'):
    gittins.gittins_index_table(1.0, 5)
  with pytest.raises(ValueError, match='must be square'):
    bb.gittins_policy(np.zeros((3, 4)))


def test_ucb1_chooses_the_arm_of_the_formula_on_a_hand_built_history():
  successes = np.array([3, 0, 1, 6])
  failures = np.array([1, 0, 2, 5])
  t, c = 15, 0.5  # 15 pulls so far: this is pull 16
  pulls = successes + failures + 2
  expected = (successes + 1) / pulls + c * np.sqrt(2 * np.log(16) / pulls)
  counts = bb.BanditCounts(jnp.asarray(successes), jnp.asarray(failures))
  np.testing.assert_allclose(bb.ucb1_scores(counts, t, c), expected, rtol=1e-6)
  policy = bb.ucb1(c)
  for seed in range(5):
    assert int(policy.choose(counts, t, jax.random.key(seed))) == np.argmax(expected)
  # With c = 0 it is greedy on the posterior means: arm 0 (4/6).
  assert int(bb.ucb1(0.0).choose(counts, t, jax.random.key(0))) == 0


def test_ties_are_broken_uniformly():
  choose = jax.jit(jax.vmap(bb.argmax_random_ties, (None, 0)))
  picks = choose(
    jnp.array([1.0, 3.0, 0.0, 3.0]), jax.random.split(jax.random.key(0), 2000)
  )
  assert set(np.unique(picks)) == {1, 3}
  assert abs(np.mean(picks == 1) - 0.5) < 0.05


EASY = rl.BanditTask(jnp.array([0.9, 0.1]))


def regret(policy, pulls=50, num_tasks=200):
  tasks = rl.BanditTask(jnp.tile(EASY.means, (num_tasks, 1)))
  returns = jax.jit(lambda k: bb.bandit_returns(policy, tasks, k, pulls))(
    jax.random.key(0)
  )
  return 0.9 * pulls - float(jnp.mean(returns))


def test_thompson_and_gittins_regret_is_far_below_random_on_an_easy_bandit():
  random_regret = regret(bb.random_policy())
  assert abs(random_regret - 20.0) < 1.5  # half the pulls on the 0.1 arm: 0.8 * 25
  assert regret(bb.thompson_sampling()) < 0.15 * random_regret
  table = gittins.gittins_index_table(0.98, 50, grid_size=256)
  assert regret(bb.gittins_policy(table)) < 0.15 * random_regret


def test_vmapped_returns_equal_a_loop_over_tasks():
  env = rl.bernoulli_bandit(4)
  tasks = rl.sample_tasks(env, jax.random.key(1), 3)
  policy = bb.ucb1(0.3)
  batched = bb.bandit_returns(policy, tasks, jax.random.key(2), 7)
  keys = jax.random.split(jax.random.key(2), 3)
  for i in range(3):
    task = rl.BanditTask(tasks.means[i])
    rewards = bb.play_bandit(policy, task, keys[i], 7)
    assert float(jnp.sum(rewards)) == float(batched[i])
