"""GP regression tasks and the exact GP oracle, against numpy and scipy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jmeta
from jmeta import neural_processes as nps


def numpy_rbf(x1, x2, length_scale, signal_std):
  """k(x, x') = s^2 exp(-|x - x'|^2 / (2 l^2)) per output dim, written from the formula."""
  out = []
  for ls, s in zip(length_scale, signal_std):
    d = (x1[:, None, :] - x2[None, :, :]) / ls
    out.append(s**2 * np.exp(-0.5 * np.sum(d**2, axis=-1)))
  return np.stack(out)


def test_samples_have_the_kernel_covariance():
  x = jnp.linspace(-2.0, 2.0, 6)[:, None]
  kernel = nps.RBFKernel(jnp.array([[0.5]]), jnp.array([0.8]))
  n = 20_000
  keys = jax.random.split(jax.random.key(0), n)
  y = jax.jit(jax.vmap(lambda k: nps.sample_gp(k, x, kernel, 0.02)))(keys)[..., 0]
  empirical = np.cov(np.asarray(y, np.float64), rowvar=False)
  expected = numpy_rbf(np.asarray(x), np.asarray(x), [[0.5]], [0.8])[0]
  expected += 0.02**2 * np.eye(6)
  # Var of a sample covariance entry is (C_ij^2 + C_ii C_jj) / n <= 2 C_max^2 / n:
  # at C_max = 0.64 and n = 20000 a standard error <= 0.0064; 5 of them make a
  # false failure over the 21 entries improbable (< 1e-4).
  np.testing.assert_allclose(empirical, expected, atol=5 * np.sqrt(2 / n) * 0.64**2)


@pytest.mark.parametrize('random_kernel', [False, True])
def test_sampled_tasks_whiten_to_standard_normal(random_kernel):
  """The sampler's y at its own x, whitened by numpy's Cholesky of that task's
  covariance, are i.i.d. N(0, 1): tests inputs, kernels and draws together."""
  ranges = dict(length_scale=(0.1, 0.6), signal_std=(0.1, 1.0)) if random_kernel else {}
  tasks = nps.gp_tasks(input_size=2, output_size=2, **ranges)
  kernels = tasks.sample_kernels(jax.random.key(1), 2000)
  batch = jax.jit(tasks.tasks_from_kernels, static_argnums=(2, 3))(
    jax.random.key(2), kernels, 3, 5
  )
  x = np.asarray(batch.query_inputs, np.float64)
  y = np.asarray(batch.query_targets, np.float64)
  ls = np.asarray(kernels.length_scale, np.float64)
  sf = np.asarray(kernels.signal_std, np.float64)
  white = []
  for i in range(x.shape[0]):
    cov = numpy_rbf(x[i], x[i], ls[i], sf[i]) + 0.02**2 * np.eye(5)
    for d in range(2):
      white.append(np.linalg.solve(np.linalg.cholesky(cov[d]), y[i, :, d]))
  white = np.stack(white)  # (4000, 5)
  # 4000 rows: a mean's standard error is 0.016, a variance's sqrt(2/4000) = 0.022;
  # 5 standard errors. float32 draws whitened in float64 add < 1e-3.
  np.testing.assert_allclose(white.mean(axis=0), 0.0, atol=5 * 0.016)
  np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(5), atol=5 * 0.022)
  if random_kernel:
    assert 0.1 <= ls.min() and ls.max() <= 0.6
    assert 0.1 <= sf.min() and sf.max() <= 1.0
  else:
    np.testing.assert_array_equal(ls, np.float32(0.4))
    np.testing.assert_array_equal(sf, 1.0)


def test_context_is_the_first_targets():
  tasks = nps.gp_tasks()
  batch = tasks.sample(jax.random.key(0), 3, 4, 11)
  assert batch.support_inputs.shape == (3, 4, 1)
  assert batch.query_targets.shape == (3, 11, 1)
  np.testing.assert_array_equal(batch.support_inputs, batch.query_inputs[:, :4])
  np.testing.assert_array_equal(batch.support_targets, batch.query_targets[:, :4])
  assert float(batch.query_inputs.min()) >= -2 and float(batch.query_inputs.max()) < 2


def test_sample_sizes_stay_in_their_ranges():
  tasks = nps.gp_tasks(context_sizes=(3, 9), max_targets=12)
  sizes = [tasks.sample_sizes(jax.random.key(i)) for i in range(200)]
  contexts, targets = np.array(sizes).T
  assert contexts.min() == 3 and contexts.max() == 9  # 200 draws of 7 values
  assert np.all(targets >= contexts) and targets.max() <= 12


def numpy_posterior(ls, sf, cx, cy, tx, noise):
  """Rasmussen & Williams eq. 2.22-2.24 with np.linalg.solve, per output dim."""
  means, covs = [], []
  kcc = numpy_rbf(cx, cx, ls, sf) + noise**2 * np.eye(len(cx))
  ktc = numpy_rbf(tx, cx, ls, sf)
  ktt = numpy_rbf(tx, tx, ls, sf) + noise**2 * np.eye(len(tx))
  for d in range(len(sf)):
    means.append(ktc[d] @ np.linalg.solve(kcc[d], cy[:, d]))
    covs.append(ktt[d] - ktc[d] @ np.linalg.solve(kcc[d], ktc[d].T))
  return np.stack(means, axis=-1), np.stack(covs)


@pytest.mark.parametrize('joint', [False, True])
def test_gp_log_likelihood_matches_scipy(x64, joint):
  rng = np.random.default_rng(0)
  num_tasks, nc, nt = 3, 4, 7
  cx, tx = (
    rng.uniform(-2, 2, (num_tasks, nc, 2)),
    rng.uniform(-2, 2, (num_tasks, nt, 2)),
  )
  cy, ty = rng.normal(size=(num_tasks, nc, 2)), rng.normal(size=(num_tasks, nt, 2))
  ls = rng.uniform(0.3, 1.0, (num_tasks, 2, 2))
  sf = rng.uniform(0.5, 1.5, (num_tasks, 2))
  kernels = nps.RBFKernel(jnp.asarray(ls), jnp.asarray(sf))
  batch = jmeta.TaskBatch(*map(jnp.asarray, (cx, cy, tx, ty)))
  got = nps.gp_log_likelihood(kernels, batch, noise_std=0.1, joint=joint)
  expected = []
  for i in range(num_tasks):
    mean, cov = numpy_posterior(ls[i], sf[i], cx[i], cy[i], tx[i], 0.1)
    if joint:
      total = sum(
        stats.multivariate_normal(mean[:, d], cov[d]).logpdf(ty[i, :, d])
        for d in range(2)
      )
    else:
      sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2)).T
      total = stats.norm(mean, sd).logpdf(ty[i]).sum()
    expected.append(total / nt)
  # float64 throughout; the Cholesky and solve routes differ by rounding only.
  np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_gp_posterior_at_a_context_input_shrinks_to_the_noise(x64):
  """With tiny noise the posterior at a context input recovers its y (mean) and
  its variance falls to about twice the noise variance (fresh noise plus the
  context's), far below the prior's signal variance of 1."""
  kernel = nps.RBFKernel(jnp.array([[0.5]]), jnp.array([1.0]))
  cx = jnp.array([[-1.0], [0.0], [1.0]])
  cy = jnp.array([[0.3], [-0.7], [1.1]])
  mean, cov = nps.gp_posterior(kernel, cx, cy, cx, 1e-3)
  np.testing.assert_allclose(mean, cy, atol=1e-5)
  np.testing.assert_allclose(np.diagonal(cov[0]), 2e-6, rtol=0.01)


def test_a_task_batch_factorizes_one_matrix_at_a_time(lapack_batch_dims):
  """Batched over tasks, concurrent LAPACK calls can deadlock XLA:CPU
  (jmeta.xla_workarounds); sampling, the posterior and both likelihoods make one
  call per task's matrix."""
  kernels = nps.RBFKernel(jnp.full((3, 1, 1), 0.5), jnp.ones((3, 1)))
  x = jax.random.uniform(jax.random.key(0), (3, 6, 1))
  y = jnp.ones((3, 6, 1))
  keys = jax.random.split(jax.random.key(1), 3)
  batch = jmeta.TaskBatch(x[:, :2], y[:, :2], x, y)
  sample = jax.vmap(lambda k, xs, kern: nps.sample_gp(k, xs, kern, 0.1))
  posterior = jax.vmap(lambda kern, cx, cy, tx: nps.gp_posterior(kern, cx, cy, tx, 0.1))
  for fn, args in [
    (sample, (keys, x, kernels)),
    (posterior, (kernels, x[:, :2], y[:, :2], x)),
    (lambda k, b: nps.gp_log_likelihood(k, b, noise_std=0.1), (kernels, batch)),
    (
      lambda k, b: nps.gp_log_likelihood(k, b, noise_std=0.1, joint=True),
      (kernels, batch),
    ),
  ]:
    assert set(lapack_batch_dims(fn, *args)) == {0}


def test_context_larger_than_the_task_is_refused():
  tasks = nps.gp_tasks()
  with pytest.raises(ValueError, match='larger than the task'):
    tasks.sample(jax.random.key(0), 2, 8, 5)
  with pytest.raises(ValueError, match='larger than the task'):
    nps.gp_tasks(context_sizes=(3, 20), max_targets=10)


def test_empty_context_is_refused():
  with pytest.raises(ValueError, match='context is empty'):
    nps.gp_tasks().sample(jax.random.key(0), 2, 0, 5)


def test_bad_kernel_ranges_are_refused():
  with pytest.raises(ValueError, match='length_scale'):
    nps.gp_tasks(length_scale=(0.6, 0.1))
  with pytest.raises(ValueError, match='noise_std'):
    nps.gp_tasks(noise_std=0.0)
