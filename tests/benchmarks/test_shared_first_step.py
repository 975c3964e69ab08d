"""The hybrid that ``shared_first_step.py`` times computes jmeta's meta-gradient."""

import chex
import jax
import pytest
import shared_first_step  # benchmarks/ (conftest.py puts it on sys.path)

import jmeta


@pytest.mark.parametrize('estimator', ['maml', 'fomaml'])
def test_first_step_over_all_tasks_gives_the_meta_gradient(x64, estimator):
  # Two steps: the shared first one and one mapped after it. In float64, so that
  # the two summation orders agree far below the tolerance.
  steps = 2
  n_way, tasks = 3, 4
  images = jax.random.normal(
    jax.random.key(0), (tasks, 2 * n_way, 8, 8, 1), jax.numpy.float64
  )
  labels = jax.numpy.tile(jax.numpy.arange(n_way), (tasks, 2))
  batch = jmeta.TaskBatch(
    images[:, :n_way], labels[:, :n_way], images[:, n_way:], labels[:, n_way:]
  )
  model = jmeta.conv4(n_way, filters=4, conv_impl='patches')
  params = jax.tree.map(
    lambda x: x.astype(jax.numpy.float64), model.init(jax.random.key(1), images[0])
  )
  reference = jmeta.make_learner(
    estimator,
    model,
    jmeta.losses.cross_entropy,
    inner_steps=steps,
    inner_learning_rate=0.5,
    batching='map',
  )
  hybrid = shared_first_step.shared_first_meta_gradient(
    model,
    jmeta.losses.cross_entropy,
    steps,
    0.5,
    first_order=estimator == 'fomaml',
  )
  ours = jax.jit(hybrid)(params, batch)
  theirs = jax.jit(reference.meta_gradient)(params, batch)
  chex.assert_trees_all_close(ours.grads, theirs.grads, rtol=1e-9, atol=1e-12)
  for name in ('loss', 'support_loss'):
    chex.assert_trees_all_close(ours.metrics[name], theirs.metrics[name], rtol=1e-12)
