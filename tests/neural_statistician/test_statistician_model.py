"""The neural statistician's math: KLs in closed form and by Monte Carlo, the
Bernoulli likelihood by hand, permutation invariance, the KL classifier on a
constructed example, and the errors at its boundary."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen

import jmeta
from jmeta import losses
from jmeta import neural_statistician as ns

SHAPE = (8, 8, 1)


# The widths of every tiny model here.
TINY_WIDTHS = dict(hidden=8, context_size=3, latent_size=2)


@pytest.fixture(scope='module')
def tiny():
  model = ns.neural_statistician(
    image_shape=SHAPE,
    channels=(2,),
    features=8,
    num_latent_layers=2,
    **TINY_WIDTHS,
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
  with pytest.raises(ValueError, match=r'image_shape \(28, 28\) must be'):
    ns.neural_statistician(image_shape=(28, 28))
  with pytest.raises(ValueError, match='decoder_convs_per_stage'):
    ns.neural_statistician(decoder_convs_per_stage=-1)
  with pytest.raises(ValueError, match='batch_norm must be True or False'):
    ns.neural_statistician(batch_norm='yes')


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
  assert learner.carry.split(params) == (params, {})
  jax.tree.map(np.testing.assert_array_equal, got.grads, want)


# The reference code's network shapes (features=None, 3 convs per stage, batch
# norm) at tiny widths.
TINY_REFERENCE = dict(
  features=None,
  **TINY_WIDTHS,
  num_latent_layers=1,
  convs_per_stage=3,
  decoder_convs_per_stage=2,
  batch_norm=True,
)


@pytest.fixture(scope='module')
def normed():
  """A tiny model with the reference code's batch norms and 3-conv stages."""
  model = ns.neural_statistician(
    image_shape=SHAPE, channels=(2, 3), residual_layers=2, **TINY_REFERENCE
  )
  return model, model.init(jax.random.key(0), jnp.zeros((4, *SHAPE)))


def test_batch_norm_trains_on_the_statistics_of_the_whole_batch_of_sets(normed):
  """The first conv's running mean and variance after one batch must be 0.9 of
  the initial ones plus 0.1 of the mean and (biased) variance of its outputs over
  every image of every set: per-set statistics would give other values."""
  model, params = normed
  sets = jax.random.bernoulli(jax.random.key(1), 0.3, (3, 4, *SHAPE)).astype(
    jnp.float32
  )
  sets = sets * jnp.arange(1.0, 4.0)[:, None, None, None, None]  # unlike sets
  _, (_, stats) = model.loss(params, sets, jax.random.key(2), 1.0)
  conv = params['encoder']['Conv_0']
  out = (
    jax.lax.conv_general_dilated(
      sets.reshape(-1, *SHAPE),
      conv['kernel'],
      (1, 1),
      'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
    + conv['bias']
  )
  got = stats['encoder']['BatchNorm_0']
  np.testing.assert_allclose(
    got['mean'], 0.1 * out.mean((0, 1, 2)), rtol=1e-4, atol=1e-6
  )
  want_var = 0.9 + 0.1 * out.var((0, 1, 2))
  np.testing.assert_allclose(got['var'], want_var, rtol=1e-4)
  # Every network's statistics are updated, none is left at its initial value.
  for name, before in params[ns.model.BATCH_STATS].items():
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, stats[name])
    assert all(jax.tree.leaves(changed)), name


def test_global_normalize_uses_one_mean_and_variance_for_all_outputs():
  class Net(linen.Module):
    @linen.compact
    def __call__(self, x):
      return ns.networks.global_normalize(x, train=True, axis_name=None)

  x = jax.random.normal(jax.random.key(3), (50, 6)) * jnp.arange(1.0, 7.0)
  x = x + 2.0 * jnp.arange(6.0)  # columns of unlike means
  variables = Net().init(jax.random.key(4), x)
  y, updates = Net().apply(variables, x, mutable=['batch_stats'])
  want = (x - x.mean()) / jnp.sqrt(x.var() + 1e-3)
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
  assert updates['batch_stats']['BatchNorm_0']['mean'].shape == (1,)
  # A per-feature norm would have made every column's mean 0; here they differ.
  assert float(jnp.ptp(y.mean(0))) > 1.0


def test_batch_norm_gives_loss_a_zero_gradient_for_the_running_averages(normed):
  model, params = normed
  sets = jax.random.bernoulli(jax.random.key(5), 0.3, (2, 3, *SHAPE)).astype(
    jnp.float32
  )
  grads = jax.grad(model.loss, has_aux=True)(params, sets, jax.random.key(6), 0.5)[0]
  for leaf in jax.tree.leaves(grads[ns.model.BATCH_STATS]):
    np.testing.assert_array_equal(leaf, 0.0)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads['encoder']))


def test_evaluation_uses_running_averages_so_queries_do_not_interact(normed):
  """With running averages, a query's logits must not depend on the other
  queries beside it (transductive batch statistics would make them)."""
  model, params = normed
  sets = jax.random.bernoulli(jax.random.key(7), 0.3, (3, 4, *SHAPE)).astype(
    jnp.float32
  )
  _, (_, stats) = model.loss(params, sets, jax.random.key(8), 1.0)
  trained = model.with_batch_stats(params, stats)
  support = images(jax.random.key(9), 3)
  query = images(jax.random.key(10), 5)
  together = model.classify(trained, support, jnp.arange(3), query, 3)
  alone = jnp.concatenate(
    [model.classify(trained, support, jnp.arange(3), q[None], 3) for q in query]
  )
  np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)
  # And the averages are used: new ones change the posterior over c.
  before = model.context(params, support)
  after = model.context(trained, support)
  assert float(jnp.abs(before.mean - after.mean).max()) > 1e-3


def test_three_stage_encoder_and_decoder_fit_28_pixels():
  """28 -> 14 -> 7 -> 4 in the encoder; the decoder crops 8 to 7 on the way back."""
  model = ns.neural_statistician(
    channels=(2, 2, 2), residual_layers=1, **TINY_REFERENCE
  )
  x = jnp.zeros((5, 28, 28, 1))
  params = model.init(jax.random.key(0), x)
  # The flattened 4 x 4 x 2 map feeds the statistic network directly.
  assert params['prepool']['Dense_0']['kernel'].shape == (32, 8)
  assert model.sample(params, x, jax.random.key(1), 3).shape == (3, 28, 28, 1)
  terms = model.elbo_terms(params, x, jax.random.key(2))
  assert np.isfinite(float(terms.reconstruction))


def test_the_learner_carries_the_running_averages(normed):
  model, params = normed
  learner = ns.statistician_learner(model, n_way=2, key=jax.random.key(11))
  x = images(jax.random.key(12), 6)
  task = jmeta.Task(x[:4], jnp.array([0, 1, 0, 1]), x[4:], jnp.array([0, 1]))
  got = learner.task_gradient(params, task, key=jax.random.key(13))
  sets = ns.class_sets(task, 2)
  grads, (_, stats) = jax.grad(model.loss, has_aux=True)(
    params, sets, jax.random.key(13), 0.0
  )
  trained_grads, carried = learner.carry.split(got.grads)
  jax.tree.map(np.testing.assert_array_equal, carried, stats)
  jax.tree.map(
    np.testing.assert_array_equal, trained_grads, learner.carry.split(grads)[0]
  )
  assert learner.carry.merge(*learner.carry.split(params)) == params


def dropout_model(rate, pool_count=True):
  """The tiny model's sizes with sample dropout at ``rate`` (its params fit any
  rate)."""
  return ns.neural_statistician(
    pool_count=pool_count,
    image_shape=SHAPE,
    channels=(2,),
    features=8,
    num_latent_layers=1,
    **TINY_WIDTHS,
    residual_layers=1,
    sample_dropout=rate,
  )


def test_sample_dropout_pools_a_subset_that_always_keeps_the_first_image():
  """Each training set's KL of c is that of q(c | a subset of it holding its first
  image): all of it at rate 0, the first image alone at rate 1, subsets of
  several sizes at 1/2."""
  x = images(jax.random.key(11), 5)
  params = dropout_model(0.5).init(jax.random.key(0), x)
  subsets = [
    (0, *rest) for k in range(5) for rest in itertools.combinations(range(1, 5), k)
  ]
  context = jax.jit(dropout_model(0.5).context)
  kl_c = np.array(
    [float(ns.standard_normal_kl(context(params, x[jnp.array(s)]))) for s in subsets]
  )

  def pooled_sizes(rate, num_sets=24):
    loss = jax.jit(dropout_model(rate).loss)
    sizes = []
    for i in range(num_sets):
      _, (metrics, _) = loss(params, x[None], jax.random.key(100 + i), 1.0)
      gaps = np.abs(kl_c - 5 * float(metrics['kl_c']))
      assert gaps.min() < 1e-4 * kl_c.max(), (rate, i, gaps.min())
      sizes.append(len(subsets[int(gaps.argmin())]))
    return sizes

  assert pooled_sizes(0.0, 3) == [5, 5, 5]
  assert pooled_sizes(1.0, 3) == [1, 1, 1]
  half = pooled_sizes(0.5)
  assert len(set(half)) >= 3, half  # Binomial(4, 1/2) + 1 over 24 sets
  assert 2 <= np.mean(half) <= 4, half


def test_with_sample_dropout_q_c_sees_the_set_size_and_evaluation_pools_all():
  model = dropout_model(1.0)
  x = images(jax.random.key(12), 5)
  params = model.init(jax.random.key(0), x)
  # The same image once or twice: the plain mean is the same, the count is not.
  one, two = model.context(params, x[:1]), model.context(params, x[jnp.array([0, 0])])
  assert not np.allclose(one.mean, two.mean, atol=1e-4)
  # Per-class pooling and the queries' singletons count as the sets on their own.
  labels = jnp.array([1, 0, 1, 0, 1])
  classes = model.class_contexts(params, x, labels, 2)
  alone = model.context(params, x[jnp.array([0, 2, 4])])
  np.testing.assert_allclose(classes.mean[1], alone.mean, rtol=1e-5, atol=1e-6)
  logits = model.classify(params, x, labels, x[:2], 2)
  singles = jax.vmap(lambda q: model.context(params, q[None]))(x[:2])
  np.testing.assert_allclose(logits, ns.kl_logits(singles, classes), rtol=1e-5)
  # The bound at evaluation leaves nothing out, whatever the training rate.
  key = jax.random.key(3)
  kept = dropout_model(0.0).elbo_terms(params, x, key)
  np.testing.assert_array_equal(model.elbo_terms(params, x, key), kept)


def test_sample_dropout_without_the_count_drops_images_from_the_plain_mean():
  model = dropout_model(1.0, pool_count=False)
  x = images(jax.random.key(13), 5)
  params = model.init(jax.random.key(0), x)
  one, two = model.context(params, x[:1]), model.context(params, x[jnp.array([0, 0])])
  np.testing.assert_allclose(one.mean, two.mean, rtol=1e-6)
  np.testing.assert_allclose(one.std, two.std, rtol=1e-6)
  _, (metrics, _) = model.loss(params, x[None], jax.random.key(1), 1.0)
  np.testing.assert_allclose(5 * metrics['kl_c'], ns.standard_normal_kl(one), rtol=1e-5)


@pytest.mark.parametrize('rate', [1.5, -0.1, True, 'half'])
def test_a_bad_sample_dropout_is_refused(rate):
  with pytest.raises(ValueError, match='sample_dropout must be None or a probability'):
    ns.neural_statistician(sample_dropout=rate)
  with pytest.raises(ValueError, match='pool_count must be True or False'):
    ns.neural_statistician(sample_dropout=0.5, pool_count='no')
