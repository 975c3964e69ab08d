"""The MANN as a learner of N-way K-shot episodes: against a loop of the memory
model's steps, queries independent of each other, and training through the
metric estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import random_episodes

from jmeta import memory, metric
from jmeta.tasks.batch import Task, TaskBatch

SIZES = {'memory_slots': 6, 'memory_width': 4, 'controller_size': 8, 'read_heads': 2}


def episode(**kwargs):
  """A small random episode: 2 shots of 5 x 5 images unless ``kwargs`` say else."""
  return random_episodes.episode(**{'shots': 2, 'size': 5, **kwargs})


def test_logits_equal_a_loop_of_the_memory_models_steps():
  learner = metric.mann_learner(3, **SIZES)
  sx, sy, qx, _ = episode()
  params = learner.init(jax.random.key(1), sx)
  got = jax.jit(learner.logits, static_argnums=4)(params, sx, sy, qx, 3)
  # The same LRUA model, stepped by hand: the support images with their one-hot
  # labels, then each query alone from the state they left, with a zero label.
  model = memory.mann(3, **SIZES)
  state = model.initial_state(params)
  for x, y in zip(np.asarray(sx), np.asarray(sy)):
    state, _ = model.step(params, state, np.concatenate([x.ravel(), np.eye(3)[y]]))
  expected = [
    model.step(params, state, np.concatenate([x.ravel(), np.zeros(3)]))[1]
    for x in np.asarray(qx)
  ]
  assert got.shape == (6, 3)
  np.testing.assert_allclose(got, np.stack(expected), rtol=1e-5, atol=1e-6)


def test_each_query_is_answered_alone_and_the_support_labels_count():
  learner = metric.mann_learner(3, **SIZES)
  sx, sy, qx, _ = episode(seed=2)
  params = learner.init(jax.random.key(3), sx)
  logits = learner.logits(params, sx, sy, qx, 3)
  order = np.array([4, 0, 5, 2, 1, 3])
  np.testing.assert_allclose(
    learner.logits(params, sx, sy, qx[order], 3), logits[order], rtol=1e-6
  )
  np.testing.assert_allclose(
    learner.logits(params, sx, sy, qx[2:3], 3), logits[2:3], rtol=1e-6
  )
  # Relabelling the support set changes what the memory holds.
  relabelled = learner.logits(params, sx, (sy + 1) % 3, qx, 3)
  assert np.max(np.abs(relabelled - logits)) > 1e-4


def test_an_episode_of_another_way_is_refused():
  learner = metric.mann_learner(3, **SIZES)
  sx, sy, qx, _ = episode(n_way=4)
  params = learner.init(jax.random.key(0), sx)
  with pytest.raises(ValueError, match='answers 3-way episodes only, not 4-way'):
    learner.logits(params, sx, sy, qx, 4)
  with pytest.raises(ValueError, match='n_way must be an int >= 2'):
    metric.mann_learner(1)


def test_the_meta_gradient_trains_it():
  # Fixed 3-way 1-shot episodes of random images whose queries are their support
  # images: from chance, log 3, the loss must fall (it reaches about 1e-4 here).
  learner = metric.mann_learner(3, **SIZES)
  estimator = metric.metric_estimator(learner, n_way=3, batching='vmap')
  tasks = [episode(shots=1, queries=1, seed=s) for s in range(8)]
  batch = TaskBatch(
    *(jnp.stack(x) for x in zip(*[(sx, sy, sx, sy) for sx, sy, _, _ in tasks]))
  )
  params = learner.init(jax.random.key(4), batch.support_inputs[0])
  optimizer = optax.adam(3e-2)
  state = optimizer.init(params)

  @jax.jit
  def step(params, state):
    grads, metrics = estimator.meta_gradient(params, batch)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, metrics['loss']

  losses = []
  for _ in range(60):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert abs(losses[0] - np.log(3)) < 0.2, losses
  assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
  # The learner's own per-episode loss agrees with the estimator's mean.
  per_task = [learner.loss(params, Task(*t), 3)[0] for t in zip(*batch)]
  _, metrics = estimator.meta_gradient(params, batch)
  np.testing.assert_allclose(np.mean(per_task), metrics['loss'], rtol=1e-5)
