"""The neural statistician's math: KLs in closed form and by Monte Carlo, the
Bernoulli likelihood by hand, permutation invariance, the KL classifier on a
constructed example, and the errors at its boundary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta import losses
from jmeta import neural_statistician as ns

SHAPE = (8, 8, 1)


@pytest.fixture(scope='module')
def tiny():
  model = ns.neural_statistician(
    image_shape=SHAPE,
    channels=(2,),
    features=8,
    hidden=8,
    context_size=3,
    latent_size=2,
    num_latent_layers=2,
    residual_layers=1,
    min_std=1e-7,  # so that zeroed stds make the draws the means (reconstruction test)
  )
  params = model.init(jax.random.key(0), jnp.zeros((4, *SHAPE)))
  return model, params


def images(key, n):
  return jax.random.bernoulli(key, 0.3, (n, *SHAPE)).astype(jnp.float32)


def test_standard_normal_kl_matches_closed_form_and_monte_carlo():
  mean = jnp.array([0.3, -1.2, 0.0])
  std = jnp.array([0.5, 1.4, 1.0])
  q = ns.Gaussian(mean, std)
  closed = np.sum(0.5 * (mean**2 + std**2 - 1.0) - np.log(std))
  np.testing.assert_allclose(ns.standard_normal_kl(q), closed, rtol=1e-6)
  # E_q[log q(x) - log p(x)] by 400k draws: within 4 standard errors.
  x = mean + std * jax.random.normal(jax.random.key(1), (400_000, 3))
  log_q = losses.gaussian_log_likelihood(
    jnp.broadcast_to(mean, x.shape), jnp.broadcast_to(std, x.shape), x
  )
  log_p = losses.gaussian_log_likelihood(jnp.zeros_like(x), jnp.ones_like(x), x)
  diff = np.asarray(log_q - log_p, np.float64)
  assert abs(diff.mean() - closed) < 4 * diff.std() / np.sqrt(diff.size)


def test_bernoulli_log_likelihood_matches_a_hand_computation():
  logits = jnp.array([[[2.0, -1.0], [0.0, 3.0]]])
  x = jnp.array([[[1.0, 0.0], [1.0, 0.0]]])
  p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
  hand = np.sum(np.where(np.asarray(x) == 1, np.log(p), np.log(1 - p)))
  np.testing.assert_allclose(
    losses.bernoulli_log_likelihood(logits, x), [hand], rtol=1e-6
  )


def test_elbo_reconstruction_is_the_bernoulli_log_likelihood_of_the_decoder(tiny):
  """With every z layer's std ~ 0 (min_std and softplus(-inf)), the draws equal the
  means, so the reconstruction term must equal a hand Bernoulli log-likelihood of
  the decoder's logits at those means."""
  model, params = tiny
  x = images(jax.random.key(2), 3)
  params = jax.tree.map(lambda a: a, params)  # a copy: the fixture is shared
  for name in params:
    if name.startswith('inference_'):
      last = max(k for k in params[name] if k.startswith('Dense_'))
      bias = params[name][last]['bias']
      params[name][last]['bias'] = bias.at[bias.shape[0] // 2 :].set(-1e4)
      params[name][last]['kernel'] = (
        params[name][last]['kernel'].at[:, bias.shape[0] // 2 :].set(0.0)
      )
  # q(c | D) too: c at its mean.
  last = max(k for k in params['postpool'] if k.startswith('Dense_'))
  half = params['postpool'][last]['bias'].shape[0] // 2
  params['postpool'][last]['bias'] = (
    params['postpool'][last]['bias'].at[half:].set(-1e4)
  )
  params['postpool'][last]['kernel'] = (
    params['postpool'][last]['kernel'].at[:, half:].set(0)
  )
  terms = model.elbo_terms(params, x, jax.random.key(3))
  # Deterministic forward pass by hand through the same networks.
  net = ns.networks
  enc = net.ConvEncoder((2,), 8)
  h = enc.apply({'params': params['encoder']}, x)
  e = net.PrePool(8).apply({'params': params['prepool']}, h).mean(0)
  head_c = net.GaussianHead(3, 8, 1, 1e-7)
  c = head_c.apply({'params': params['postpool']}, e)[0]
  head = net.GaussianHead(2, 8, 1, 1e-7)
  z1 = head.apply({'params': params['inference_0']}, h, c)[0]
  z2 = head.apply({'params': params['inference_1']}, h, z1, c)[0]
  dec = net.ObservationDecoder((2,), 8, SHAPE)
  logits = np.asarray(
    dec.apply({'params': params['decoder']}, jnp.concatenate([z1, z2], -1), c),
    np.float64,
  )
  p = 1 / (1 + np.exp(-logits))
  xs = np.asarray(x)
  hand = np.sum(xs * np.log(p) + (1 - xs) * np.log(1 - p))
  np.testing.assert_allclose(terms.reconstruction, hand, rtol=1e-4)


def test_statistic_network_is_permutation_invariant(tiny):
  model, params = tiny
  x = images(jax.random.key(4), 5)
  perm = jnp.array([3, 0, 4, 1, 2])
  a, b = model.context(params, x), model.context(params, x[perm])
  np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(a.std, b.std, rtol=1e-5, atol=1e-6)
  # And the per-class pooling agrees with pooling each class's set on its own.
  labels = jnp.array([1, 0, 1, 0, 1])
  classes = model.class_contexts(params, x, labels, 2)
  alone = model.context(params, x[jnp.array([0, 2, 4])])
  np.testing.assert_allclose(classes.mean[1], alone.mean, rtol=1e-5, atol=1e-6)


def test_kl_logits_pick_the_class_with_the_closest_posterior():
  classes = ns.Gaussian(
    jnp.array([[0.0, 0.0], [3.0, 0.0], [0.0, -3.0]]), jnp.full((3, 2), 0.5)
  )
  queries = ns.Gaussian(
    jnp.array([[2.8, 0.1], [0.1, -2.9], [-0.2, 0.3]]), jnp.full((3, 2), 0.4)
  )
  logits = ns.kl_logits(queries, classes)
  np.testing.assert_array_equal(jnp.argmax(logits, -1), [1, 2, 0])
  want = -losses.diagonal_gaussian_kl(
    queries.mean[0], queries.std[0], classes.mean[2], classes.std[2]
  )
  np.testing.assert_allclose(logits[0, 2], want, rtol=1e-6)


def test_classify_recovers_the_support_classes_of_copied_queries(tiny):
  """Queries that are copies of 1-shot support images: each query's q(c | {x}) is
  its class's own, KL 0, so the rule must pick it."""
  model, params = tiny
  support = images(jax.random.key(5), 4)
  logits = model.classify(params, support, jnp.arange(4), support[::-1], 4)
  np.testing.assert_array_equal(jnp.argmax(logits, -1), [3, 2, 1, 0])


def test_weighted_loss_is_the_negative_bound_per_image_at_alpha_zero():
  terms = ns.ElboTerms(jnp.array(-50.0), jnp.array(6.0), jnp.array(2.0))
  np.testing.assert_allclose(ns.weighted_loss(terms, 0.0, 4), (50 + 8) / 4)
  np.testing.assert_allclose(ns.weighted_loss(terms, 1.0, 4), (100 + 4) / 4)


def test_errors_name_empty_sets_and_wrong_shapes(tiny):
  model, params = tiny
  with pytest.raises(ValueError, match='empty set'):
    model.context(params, jnp.zeros((0, *SHAPE)))
  with pytest.raises(ValueError, match=r'shape \(3, 28, 28, 1\)'):
    model.elbo_terms(params, jnp.zeros((3, 28, 28, 1)), jax.random.key(0))
  with pytest.raises(ValueError, match='batch of sets'):
    model.loss(params, jnp.zeros((3, *SHAPE)), jax.random.key(0), 1.0)
  with pytest.raises(ValueError, match='divisible'):
    ns.neural_statistician(image_shape=(28, 28, 1), channels=(4, 4, 4))


def test_the_learner_predicts_by_classify_and_trains_on_class_sets(tiny):
  model, params = tiny
  learner = ns.statistician_learner(model, n_way=2, key=jax.random.key(7))
  x = images(jax.random.key(8), 6)
  # Class-major support (2 per class) and query (1 per class), labels shuffled
  # within each split: class_sets must regroup them by label.
  task = jmeta.Task(
    support_inputs=x[:4],
    support_targets=jnp.array([1, 0, 0, 1]),
    query_inputs=x[4:],
    query_targets=jnp.array([1, 0]),
  )
  sets = ns.class_sets(task, 2)
  np.testing.assert_array_equal(sets[0], x[jnp.array([1, 2, 5])])
  np.testing.assert_array_equal(sets[1], x[jnp.array([0, 3, 4])])
  np.testing.assert_array_equal(
    learner.predict(params, task.support_inputs, task.support_targets, x[4:]),
    model.classify(params, task.support_inputs, task.support_targets, x[4:], 2),
  )
  key = jax.random.key(9)
  got = learner.task_gradient(params, task, key=key)
  want = jax.grad(model.loss, has_aux=True)(params, sets, key, 0.0)[0]
  jax.tree.map(np.testing.assert_array_equal, got.grads, want)
