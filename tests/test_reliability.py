"""Issue 23's silent wrong answers, one test per item: each fails on the code before
its fix (a NaN or a plausible number with no error) and passes after it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta import metric
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


def linear_embedding(dim_out=3):
  def init(key, x):
    return {'w': jax.random.normal(key, (x.shape[-1], dim_out), x.dtype)}

  def apply(params, x, *, batch_norm=jmeta.TRANSDUCTIVE, num_support=None):
    del batch_norm, num_support
    return x @ params['w']

  return jmeta.Model(init, apply)


def test_wrong_n_way_in_metric_learners():
  learner = metric.prototypical(linear_embedding())
  batch = classification_batch()  # 5-way 2-shot: 10 support examples per episode
  params = learner.init(jax.random.key(0), batch.support_inputs[0])

  def train(n_way):
    trainer = jmeta.make_meta_trainer(
      metric.metric_estimator(learner, n_way=n_way), optax.sgd(0.1)
    )
    state, _ = trainer.step(trainer.init(params), batch)
    return state

  jmeta.raise_if_nonfinite(train(N_WAY))
  # Too few ways: labels 3 and 4 lie outside [0, 3) (was a NaN loss).
  state = train(3)
  with pytest.raises(BadLabelsError, match=r'labels in \[0, 4\], outside \[0, 3\)'):
    jmeta.raise_if_nonfinite(state)
  jax.tree.map(np.testing.assert_array_equal, state.params, params)
  # Too many ways, shown by the support size: refused at trace time.
  with pytest.raises(ValueError, match='n_way=20 but each episode has 10 support'):
    train(20)
  with pytest.raises(ValueError, match='n_way=20 but each episode has 10 support'):
    metric.evaluate_metric(learner, params, batch, n_way=20)
  # Too many ways within the support size: classes 5..7 label no support example
  # (was a silently different loss).
  with pytest.raises(BadLabelsError, match=r'no example of some class in \[0, 8\)'):
    jmeta.raise_if_nonfinite(train(8))


def test_adam_eps_root_in_the_inner_loop():
  net = jmeta.mlp((8,), N_WAY)

  def init(key, x):
    return {'net': net.init(key, x), 'bias': jnp.zeros((N_WAY,))}

  def apply(params, x, **kwargs):
    # A bias whose gradient is exactly zero (like a conv bias feeding batch norm).
    return net.apply(params['net'], x, **kwargs) + 0.0 * params['bias']

  model = jmeta.Model(init, apply)
  params = model.init(jax.random.key(0), jnp.zeros((1, FEATURES)))
  batch = classification_batch()

  def meta_gradient(make, optimizer):
    learner = make(model, cross_entropy, inner_steps=1, inner_optimizer=optimizer)
    return learner.meta_gradient(params, batch)

  # Second order through Adam with eps_root=0 was a NaN meta-gradient, no error.
  with pytest.raises(ValueError, match=r'eps_root > 0, e.g. optax.adam'):
    meta_gradient(jmeta.maml, optax.adam(0.01))
  grads, _ = meta_gradient(jmeta.maml, optax.adam(0.01, eps_root=1e-8))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  # First order does not differentiate through the optimizer: accepted and finite.
  grads, _ = meta_gradient(jmeta.fomaml, optax.adam(0.01))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_nonfinite_message_names_the_likely_causes_in_order():
  learner, params = classifier_maml()
  trainer = jmeta.make_meta_trainer(learner, optax.sgd(0.1))
  batch = classification_batch()
  nan_inputs = batch.query_inputs.at[0, 0, 0].set(jnp.nan)
  state, _ = trainer.step(trainer.init(params), batch._replace(query_inputs=nan_inputs))
  with pytest.raises(jmeta.NonFiniteMetaLossError) as error:
    jmeta.raise_if_nonfinite(state)
  message = str(error.value)
  causes = ['eps_root', 'labels outside [0, num_classes)', 'NaN or inf in the task']
  causes.append('learning rate')
  positions = [message.find(cause) for cause in causes]
  assert -1 not in positions and positions == sorted(positions), message
