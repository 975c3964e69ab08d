"""Meta-gradient estimators against the true meta-gradient on quadratics:
full backprop against finite differences, truncated backprop against full backprop,
ES and PES unbiased within their standard error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmeta import learned_optimizers as lopt

FAMILY = lopt.quadratics(3)


def momentum_rule():
  """A two-number rule for the statistical tests: m <- sigmoid(b) m + g,
  u = -exp(a) m, smooth in (a, b)."""

  def meta_init(key):
    del key
    return {'a': jnp.log(jnp.full((), 0.01)), 'b': jnp.zeros(())}

  def init(meta, params):
    del meta
    return jnp.zeros_like(params)

  def update(meta, grads, m, params):
    del params
    m = jax.nn.sigmoid(meta['b']) * m + grads
    return -jnp.exp(meta['a']) * m, m

  return lopt.LearnedRule('momentum', meta_init, init, update)


def flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def test_full_backprop_matches_finite_differences(x64):
  rule = lopt.lstm_rule(hidden_size=4)
  meta = rule.meta_init(jax.random.key(0))
  est = lopt.full_backprop(rule, FAMILY, steps=4, num_tasks=2)
  key = jax.random.key(1)
  out, _ = jax.jit(est.estimate)(meta, est.init(meta, key), key)
  loss = jax.jit(lambda m: est.estimate(m, None, key)[0].metrics['loss'])
  leaves, treedef = jax.tree.flatten(meta)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  v = jax.tree.unflatten(
    treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
  )
  h = 1e-6
  shift = lambda s: jax.tree.map(lambda m, d: m + s * h * d, meta, v)  # noqa: E731
  numeric = (loss(shift(1)) - loss(shift(-1))) / (2 * h)
  np.testing.assert_allclose(jnp.vdot(flat(out.grads), flat(v)), numeric, rtol=1e-6)


def test_truncated_backprop_covering_the_unroll_is_full_backprop_and_carries_state():
  rule = lopt.lstm_rule(hidden_size=4)
  meta = rule.meta_init(jax.random.key(0))
  key = jax.random.key(3)
  full = lopt.full_backprop(rule, FAMILY, steps=4, num_tasks=3)
  whole = lopt.truncated_backprop(rule, FAMILY, steps=4, truncation=4, num_tasks=3)
  expected, _ = jax.jit(full.estimate)(meta, None, key)
  got, _ = jax.jit(whole.estimate)(meta, whole.init(meta, key), key)
  np.testing.assert_allclose(
    flat(got.grads), flat(expected.grads), rtol=1e-5, atol=1e-7
  )
  np.testing.assert_allclose(got.metrics['loss'], expected.metrics['loss'], rtol=1e-6)

  halves = lopt.truncated_backprop(rule, FAMILY, steps=4, truncation=2, num_tasks=3)
  state = halves.init(meta, key)
  estimate = jax.jit(halves.estimate)
  first, state = estimate(meta, state, jax.random.key(10))
  second, state = estimate(meta, state, jax.random.key(11))
  np.testing.assert_array_equal(state.step, [4, 4, 4])
  # The two halves' losses make up the whole unroll's.
  np.testing.assert_allclose(
    (first.metrics['loss'] + second.metrics['loss']) / 2,
    expected.metrics['loss'],
    rtol=1e-5,
  )
  ended = state
  _, state = estimate(meta, state, jax.random.key(12))
  np.testing.assert_array_equal(state.step, [2, 2, 2])  # fresh problems
  assert not np.allclose(state.task.w, ended.task.w)


def paired_differences(estimate_fn, reference_fn, samples):
  keys = jax.random.split(jax.random.key(7), samples)
  diff = jax.jit(jax.vmap(lambda k: flat(estimate_fn(k)) - flat(reference_fn(k))))(keys)
  truth = jax.jit(jax.vmap(lambda k: flat(reference_fn(k))))(keys)
  return np.asarray(diff, np.float64), np.asarray(truth, np.float64)


def assert_unbiased(diff, truth):
  mean = diff.mean(0)
  se = diff.std(0, ddof=1) / np.sqrt(len(diff))
  # The test has power: the standard error is well below the gradient itself.
  assert np.all(se < 0.2 * np.abs(truth.mean(0))), (se, truth.mean(0))
  # 4.5 standard errors: a false alarm about once in 10^5 runs per coordinate.
  assert np.all(np.abs(mean) < 4.5 * se), (mean, se)


def test_antithetic_es_is_unbiased_against_full_backprop():
  rule = momentum_rule()
  meta = rule.meta_init(None)
  es = lopt.antithetic_es(rule, FAMILY, steps=4, num_tasks=1, std=0.01)
  full = lopt.full_backprop(rule, FAMILY, steps=4, num_tasks=1)
  diff, truth = paired_differences(
    lambda k: es.estimate(meta, None, k)[0].grads,
    lambda k: full.estimate(meta, None, k)[0].grads,
    4000,
  )
  assert_unbiased(diff, truth)


def test_pes_over_truncations_is_unbiased_against_full_backprop():
  rule = momentum_rule()
  meta = rule.meta_init(None)
  est = lopt.pes(rule, FAMILY, steps=4, truncation=2, num_tasks=1, std=0.01)
  full = lopt.full_backprop(rule, FAMILY, steps=4, num_tasks=1)

  def pes_mean(k):
    state = est.init(meta, k)
    first, state = est.estimate(meta, state, jax.random.fold_in(k, 1))
    second, _ = est.estimate(meta, state, jax.random.fold_in(k, 2))
    # The unroll's loss is the mean of its two truncations' losses.
    return jax.tree.map(lambda a, b: (a + b) / 2, first.grads, second.grads)

  diff, truth = paired_differences(
    pes_mean, lambda k: full.estimate(meta, None, k)[0].grads, 4000
  )
  assert_unbiased(diff, truth)


def test_meta_train_step_lowers_the_meta_loss():
  import optax

  rule = momentum_rule()
  est = lopt.truncated_backprop(rule, FAMILY, steps=8, truncation=8, num_tasks=16)
  opt = optax.adam(0.05)
  state = lopt.init_meta_train_state(est, opt, rule.meta_init(None), jax.random.key(0))
  step = jax.jit(lopt.meta_train_step(est, opt))
  losses = []
  for i in range(40):
    state, metrics = step(state, jax.random.key(i))
    losses.append(float(metrics['loss']))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
  assert int(state.step) == 40


@pytest.mark.parametrize(
  'make, match',
  [
    (
      lambda r: lopt.truncated_backprop(r, FAMILY, steps=4, truncation=8, num_tasks=1),
      'truncation length 8 is longer than the unroll of 4',
    ),
    (
      lambda r: lopt.pes(r, FAMILY, steps=6, truncation=4, num_tasks=1),
      'does not divide the unroll of 6',
    ),
    (
      lambda r: lopt.full_backprop(r, FAMILY, steps=-1, num_tasks=1),
      r'steps\) must be >= 0, got -1',
    ),
    (
      lambda r: lopt.full_backprop(r, FAMILY, steps=0, num_tasks=1),
      'at least 1 inner step',
    ),
    (
      lambda r: lopt.antithetic_es(r, FAMILY, steps=4, num_tasks=0),
      'num_tasks must be a positive int',
    ),
    (
      lambda r: lopt.antithetic_es(r, FAMILY, steps=4, num_tasks=1, std=0.0),
      'std must be > 0',
    ),
    (
      lambda r: lopt.truncated_backprop(r, FAMILY, steps=4, truncation=0, num_tasks=1),
      'truncation length must be a positive int',
    ),
  ],
)
def test_bad_configurations_are_refused(make, match):
  with pytest.raises(ValueError, match=match):
    make(momentum_rule())
