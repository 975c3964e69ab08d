"""Conditional, latent and attentive neural processes: invariances, estimators, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jmeta
from jmeta import neural_processes as nps

TINY = dict(encoder_sizes=(16, 16), decoder_sizes=(16,))
LATENT = dict(TINY, latent_sizes=(16, 16), num_latents=4)
PROCESSES = {
  'cnp': lambda: nps.conditional_neural_process(**TINY),
  'np': lambda: nps.latent_neural_process(**LATENT),
  'np_latent_only': lambda: nps.latent_neural_process(
    **LATENT, deterministic_path=False
  ),
  'anp': lambda: nps.attentive_neural_process(
    **LATENT, attention_sizes=(16,), num_heads=4
  ),
  'anp_self_attention': lambda: nps.attentive_neural_process(
    **LATENT, attention_sizes=(16,), num_heads=4, self_attention=True
  ),
}


SAMPLE = jax.jit(nps.gp_tasks().sample, static_argnums=(1, 2, 3))


def one_task(seed=0, num_context=6, num_targets=9):
  batch = SAMPLE(jax.random.key(seed), 1, num_context, num_targets)
  return jmeta.Task(*(x[0] for x in batch))


@pytest.mark.parametrize('name', sorted(PROCESSES))
def test_predictions_do_not_depend_on_the_context_order(name):
  process = PROCESSES[name]()
  task = one_task()
  params = process.init(jax.random.key(0), task.support_inputs)
  perm = np.random.default_rng(0).permutation(task.support_inputs.shape[0])
  predict = jax.jit(process.predict)  # one compilation, not one per operation
  before = predict(params, *task[:2], task.query_inputs)
  after = predict(
    params, task.support_inputs[perm], task.support_targets[perm], task.query_inputs
  )
  # Shuffling only reorders float32 sums over 6 context points (means, softmax
  # denominators): a few ulps of outputs of order 1, far below 1e-5.
  np.testing.assert_allclose(after.mean, before.mean, atol=1e-5)
  np.testing.assert_allclose(after.std, before.std, atol=1e-5)
  if process.latent:
    key = jax.random.key(3)
    shuffled = jmeta.Task(
      task.support_inputs[perm], task.support_targets[perm], *task[2:]
    )
    loss = jax.jit(process.loss)
    np.testing.assert_allclose(
      loss(params, shuffled, key)[0], loss(params, task, key)[0], atol=1e-5
    )


@pytest.mark.parametrize('name', ['np', 'anp'])
def test_latent_log_likelihood_is_the_monte_carlo_mean_of_the_likelihoods(name, x64):
  """log (1/S) sum_s prod_t N(y_t; mu_st, sigma_st^2), per target point, with the
  decoder's outputs for the same S draws of z from q(z | context)."""
  process = PROCESSES[name]()
  task = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), one_task(seed=1))
  params = process.init(jax.random.key(0), task.support_inputs)
  params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
  key = jax.random.key(7)
  samples = jax.jit(process.sample_predictive, static_argnums=5)(
    params, *task[:3], key, 5
  )
  assert samples.mean.shape == (5, 9, 1)
  y = np.asarray(task.query_targets)
  per_z = stats.norm(samples.mean, samples.std).logpdf(y).sum(axis=(1, 2))
  expected = (special.logsumexp(per_z) - np.log(5)) / y.shape[0]
  got = jax.jit(process.log_likelihood, static_argnums=3)(params, task, key, 5)
  np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_cnp_log_likelihood_and_evaluate_match_scipy(x64):
  process = PROCESSES['cnp']()
  batch = nps.gp_tasks().sample(jax.random.key(2), 3, 4, 8)
  batch = jmeta.TaskBatch(*(jnp.asarray(x, jnp.float64) for x in batch))
  params = process.init(jax.random.key(0), batch.support_inputs[0])
  learner = nps.neural_process_learner(process)
  metrics = jmeta.evaluate(learner, params, batch, nps.predictive_metrics)
  for i in range(3):
    task = jmeta.Task(*(x[i] for x in batch))
    pred = process.predict(params, *task[:3])
    y = np.asarray(task.query_targets)
    log_p = stats.norm(pred.mean, pred.std).logpdf(y).mean()
    np.testing.assert_allclose(metrics['log_likelihood'][i], log_p, rtol=1e-10)
    np.testing.assert_allclose(process.log_likelihood(params, task, None), log_p)
    np.testing.assert_allclose(
      metrics['mse'][i], np.mean((np.asarray(pred.mean) - y) ** 2), rtol=1e-10
    )


def test_latent_loss_is_the_negative_elbo_per_target():
  """loss = -(sum_t log p(y_t | z) - KL) / T, from its own reported terms."""
  process = PROCESSES['anp']()
  task = one_task(seed=4)
  params = process.init(jax.random.key(0), task.support_inputs)
  value, metrics = process.loss(params, task, jax.random.key(1))
  t = task.query_targets.shape[0]
  expected = -(metrics['log_likelihood'] * t - metrics['kl']) / t
  np.testing.assert_allclose(value, expected, rtol=1e-6)
  assert metrics['kl'] > 0  # q(z | targets) and q(z | context) differ


def test_predictions_have_the_std_floor():
  process = nps.conditional_neural_process(**TINY, min_std=0.25)
  task = one_task()
  params = process.init(jax.random.key(0), task.support_inputs)
  # Push the decoder's std logits far negative: the std stays at its floor.
  last = sorted(params['decoder'])[-1]
  params['decoder'][last]['b'] = params['decoder'][last]['b'].at[1].set(-50.0)
  pred = process.predict(params, *task[:3])
  np.testing.assert_allclose(pred.std, 0.25, rtol=1e-6)


@pytest.mark.parametrize('name', ['cnp', 'anp'])
def test_an_empty_context_is_refused(name):
  process = PROCESSES[name]()
  task = one_task()
  params = process.init(jax.random.key(0), task.support_inputs)
  with pytest.raises(ValueError, match='context is empty'):
    process.predict(params, jnp.zeros((0, 1)), jnp.zeros((0, 1)), task.query_inputs)
  empty = jmeta.TaskBatch(
    jnp.zeros((2, 0, 1)),
    jnp.zeros((2, 0, 1)),
    jnp.zeros((2, 5, 1)),
    jnp.zeros((2, 5, 1)),
  )
  learner = nps.neural_process_learner(process, key=jax.random.key(0))
  with pytest.raises(ValueError, match='support set is empty'):
    learner.meta_gradient(params, empty)


@pytest.mark.parametrize('name', ['cnp', 'np', 'anp'])
def test_mismatched_input_dimensions_are_refused(name):
  process = PROCESSES[name]()
  task = one_task()
  params = process.init(jax.random.key(0), task.support_inputs)  # 1-D inputs
  two_d = jnp.zeros((9, 2))
  with pytest.raises(ValueError, match='target_x has 2 features.*width 1'):
    process.predict(params, *task[:2], two_d)
  with pytest.raises(ValueError, match='context_x has 2 features'):
    process.predict(params, two_d[:6], task.support_targets, task.query_inputs)
  with pytest.raises(ValueError, match='target_y has 2 features'):
    process.loss(params, task._replace(query_targets=two_d), jax.random.key(0))
  with pytest.raises(ValueError, match='one task'):
    process.predict(params, task.support_inputs[None], *task[1:3])
  learner = nps.neural_process_learner(process, key=jax.random.key(0))
  batch = nps.gp_tasks(input_size=2).sample(jax.random.key(0), 2, 3, 5)
  with pytest.raises(ValueError, match='context_x has 2 features'):
    learner.meta_gradient(params, batch)


def test_bad_configurations_are_refused():
  with pytest.raises(ValueError, match='key='):
    nps.neural_process_learner(PROCESSES['np']())
  with pytest.raises(ValueError, match='NeuralProcess'):
    nps.neural_process_learner(jmeta.mlp((4,), 1))
  with pytest.raises(ValueError, match='num_heads=3'):
    nps.attentive_neural_process(**LATENT, num_heads=3)
  with pytest.raises(ValueError, match='encoder_sizes'):
    nps.conditional_neural_process(encoder_sizes=())
  with pytest.raises(ValueError, match='min_std'):
    nps.conditional_neural_process(min_std=1.0)
