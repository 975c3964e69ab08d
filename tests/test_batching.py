"""Batching strategies compute the same thing as a Python loop over tasks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jmeta
from jmeta.losses import mean_squared_error

NUM_TASKS = 4
STRATEGIES = [('vmap', None), ('map', None), ('chunked', 2)]
TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope='module')
def setup():
  model = jmeta.mlp((8,), 1, activation=jnp.tanh)
  batch = jmeta.sinusoid_tasks(5, 6).sample(jax.random.key(0), NUM_TASKS)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  return model, params, batch


def estimator(name, model, strategy, chunk_size=None):
  return jmeta.make_learner(
    name,
    model,
    mean_squared_error,
    inner_steps=2,
    inner_learning_rate=0.05,
    batching=strategy,
    chunk_size=chunk_size,
  )


@pytest.mark.parametrize('name', ['maml', 'fomaml', 'reptile'])
def test_strategies_and_python_loop_give_the_same_meta_gradient(setup, name):
  model, params, batch = setup
  results = {
    strategy: jax.jit(estimator(name, model, strategy, chunk).meta_gradient)(
      params, batch
    )
    for strategy, chunk in STRATEGIES
  }
  # The naive reference: one task at a time, then the mean over tasks.
  task_gradient = jax.jit(estimator(name, model, 'vmap').task_gradient)
  per_task = [
    task_gradient(params, jmeta.Task(*(field[i] for field in batch)))
    for i in range(NUM_TASKS)
  ]
  loop = jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs), axis=0), *per_task)
  for strategy, result in results.items():
    chex.assert_tree_all_finite(result)
    chex.assert_trees_all_close(result, loop, **TOL, custom_message=strategy)
  # Tasks differ, so the per-task gradients do too: the mean is not one task's value.
  assert not np.allclose(per_task[0].grads['layer_1']['b'], loop.grads['layer_1']['b'])


def test_auto_uses_the_backend_default(setup):
  model, params, batch = setup
  auto = jax.jit(estimator('maml', model, 'auto').meta_gradient)(params, batch)
  default = jax.jit(estimator('maml', model, jmeta.default_batching()).meta_gradient)(
    params, batch
  )
  chex.assert_trees_all_close(auto, default, rtol=1e-6, atol=1e-7)


def test_default_batching_per_backend():
  assert jmeta.default_batching('cpu') == 'map'
  assert jmeta.default_batching('gpu') == 'vmap'
  assert jmeta.default_batching('tpu') == 'vmap'
  assert jmeta.default_batching() in jmeta.BATCHING_STRATEGIES


def task_summary(model, params):
  """A per-task function with a pytree output of mixed shapes."""

  def fn(task):
    task = jmeta.Task(*task)
    out = model.apply(params, task.query_inputs)
    return {
      'outputs': out,
      'loss': mean_squared_error(out, task.query_targets),
      'support_mean': jnp.mean(task.support_inputs, axis=0),
    }

  return fn


@pytest.mark.parametrize('strategy, chunk_size', STRATEGIES + [('auto', None)])
def test_map_tasks_equals_python_loop(setup, strategy, chunk_size):
  model, params, batch = setup
  fn = task_summary(model, params)
  mapped = jmeta.map_tasks(fn, batch, strategy=strategy, chunk_size=chunk_size)
  loop = [fn(tuple(field[i] for field in batch)) for i in range(NUM_TASKS)]
  stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *loop)
  chex.assert_trees_all_equal_shapes(mapped, stacked)
  chex.assert_trees_all_close(mapped, stacked, **TOL)


@pytest.mark.parametrize('strategy, chunk_size', STRATEGIES)
def test_mean_over_tasks_equals_numpy_mean(setup, strategy, chunk_size):
  model, params, batch = setup
  fn = task_summary(model, params)
  mean = jmeta.mean_over_tasks(fn, batch, strategy=strategy, chunk_size=chunk_size)
  loop = [fn(tuple(field[i] for field in batch)) for i in range(NUM_TASKS)]
  expected = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *loop)
  chex.assert_trees_all_close(mean, expected, **TOL)


def test_chunked_mean_handles_chunk_of_whole_batch_and_of_one(setup):
  model, params, batch = setup
  fn = task_summary(model, params)
  ref = jmeta.mean_over_tasks(fn, batch, strategy='vmap')
  for chunk_size in (1, NUM_TASKS):
    got = jmeta.mean_over_tasks(fn, batch, strategy='chunked', chunk_size=chunk_size)
    chex.assert_trees_all_close(got, ref, **TOL)


def test_chunk_size_that_does_not_divide_the_batch_raises(setup):
  model, params, batch = setup
  fn = task_summary(model, params)
  with pytest.raises(ValueError, match='chunk_size=3 does not divide the 4 tasks'):
    jmeta.map_tasks(fn, batch, strategy='chunked', chunk_size=3)
  with pytest.raises(ValueError, match='does not divide'):
    jmeta.mean_over_tasks(fn, batch, strategy='chunked', chunk_size=3)
  est = estimator('maml', model, 'chunked', 3)
  with pytest.raises(ValueError, match='does not divide'):
    est.meta_gradient(params, batch)


@pytest.mark.parametrize('chunk_size', [None, 0, -2, 2.0, True])
def test_chunked_needs_a_positive_int_chunk_size(setup, chunk_size):
  model, params, batch = setup
  with pytest.raises(ValueError, match='positive int chunk_size'):
    jmeta.map_tasks(
      task_summary(model, params), batch, strategy='chunked', chunk_size=chunk_size
    )


def test_unknown_strategy_raises(setup):
  model, params, batch = setup
  for fn in (jmeta.map_tasks, jmeta.mean_over_tasks):
    with pytest.raises(ValueError, match="unknown batching strategy 'pmap'"):
      fn(task_summary(model, params), batch, strategy='pmap')


def test_leaves_with_different_task_counts_raise():
  tasks = (jnp.zeros((4, 2)), jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match='same leading'):
    jmeta.mean_over_tasks(lambda t: t[0], tasks, strategy='map')


def test_mean_over_tasks_in_order_passes_the_state_on_as_a_python_loop_does(setup):
  tasks = tuple(setup[2])

  def fn(task, state):
    # Depends on the order: each task sees the state the one before it left.
    value = jnp.sum(task.support_inputs) * state['scale'] + state['count']
    return {'value': value}, {
      'scale': state['scale'] * 0.5 + 1.0,
      'count': state['count'] + 1,
    }

  start = {'scale': jnp.float32(2.0), 'count': jnp.int32(0)}
  got, end = jmeta.mean_over_tasks_in_order(
    lambda task, state: fn(jmeta.Task(*task), state), tasks, start
  )
  state, values = start, []
  for i in range(tasks[0].shape[0]):
    out, state = fn(jmeta.Task(*(x[i] for x in tasks)), state)
    values.append(out['value'])
  np.testing.assert_allclose(got['value'], np.mean(values), rtol=1e-6)
  np.testing.assert_allclose(end['scale'], state['scale'], rtol=1e-6)
  assert int(end['count']) == tasks[0].shape[0] and end['count'].dtype == jnp.int32
