"""Issue 23's silent wrong answers, one test per item: each fails on the code before
its fix (a NaN or a plausible number with no error) and passes after it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.losses import classification_metrics, cross_entropy
from jmeta.outer_loop import BadLabelsError

N_WAY, K_SHOT, Q_QUERY, FEATURES = 5, 2, 3, 4


def classification_batch(num_tasks=2, seed=0, n_way=N_WAY, k_shot=K_SHOT):
  """``num_tasks`` n-way tasks of Gaussian features, labels 0..n_way-1 class-major."""
  rng = np.random.default_rng(seed)
  support = n_way * k_shot
  query = n_way * Q_QUERY
  return jmeta.TaskBatch(
    jnp.asarray(rng.normal(size=(num_tasks, support, FEATURES)), jnp.float32),
    jnp.tile(jnp.repeat(jnp.arange(n_way, dtype=jnp.int32), k_shot), (num_tasks, 1)),
    jnp.asarray(rng.normal(size=(num_tasks, query, FEATURES)), jnp.float32),
    jnp.tile(jnp.repeat(jnp.arange(n_way, dtype=jnp.int32), Q_QUERY), (num_tasks, 1)),
  )


def with_query_label(batch, label):
  """``batch`` with the first query label of its first task replaced by ``label``."""
  return batch._replace(query_targets=batch.query_targets.at[0, 0].set(label))


def classifier_maml(**kwargs):
  model = jmeta.mlp((8,), N_WAY)
  learner = jmeta.maml(
    model,
    cross_entropy,
    inner_steps=1,
    inner_learning_rate=0.1,
    metrics_fn=classification_metrics,
    **kwargs,
  )
  params = model.init(jax.random.key(0), jnp.zeros((1, FEATURES)))
  return learner, learner.init(params)


@pytest.mark.parametrize('label', [7, -1])
def test_labels_out_of_range(label):
  learner, params = classifier_maml()
  trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-3))
  state = trainer.init(params)
  good = classification_batch()
  state, _ = trainer.step(state, good)
  jmeta.raise_if_nonfinite(state)  # labels in [0, 5): no complaint
  after_good = state.params
  state, _ = trainer.step(state, with_query_label(good, label))
  state, _ = trainer.step(state, good)
  lo, hi = min(0, label), max(N_WAY - 1, label)
  with pytest.raises(
    BadLabelsError,
    match=rf'labels out of range: the task batch at step 1 has labels in '
    rf'\[{lo}, {hi}\], outside \[0, 5\)',
  ):
    jmeta.raise_if_nonfinite(state)
  # The bad batch's update and every later one were skipped.
  jax.tree.map(np.testing.assert_array_equal, state.params, after_good)
  assert isinstance(BadLabelsError('x'), ValueError)
