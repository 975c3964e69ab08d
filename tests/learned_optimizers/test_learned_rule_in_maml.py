"""A learned optimizer from jmeta.learned_optimizers as MAML's inner rule, through
the public gradient-learner interface."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jmeta
from jmeta import estimators
from jmeta import learned_optimizers as lopt


def setup():
  model = jmeta.mlp((8,), 1, activation=jnp.tanh)
  tasks = jmeta.sinusoid_tasks(5, 5)
  batch = tasks.sample(jax.random.key(0), 4)
  params = model.init(jax.random.key(1), batch.support_inputs[0])
  return model, tasks, batch, params


def test_an_sgd_configured_learned_rule_gives_maml_s_meta_gradient():
  """The MLP rule at its SGD meta-params is SGD, so the init's meta-gradient is
  MAML's, and the rule's own weights get a gradient too."""
  model, _, batch, params = setup()
  rule = lopt.mlp_rule(8, 1)
  meta = lopt.sgd_meta_params(rule, 0.05)
  loss = jmeta.losses.mean_squared_error
  learner = jmeta.gradient_learner(
    model,
    loss,
    rule=lopt.as_inner_rule(rule, meta),
    estimator=estimators.second_order(),
    inner_steps=2,
  )
  ours = jax.jit(learner.meta_gradient)(learner.init(params), batch)
  maml = jax.jit(
    jmeta.maml(model, loss, inner_steps=2, inner_learning_rate=0.05).meta_gradient
  )(params, batch)
  chex.assert_trees_all_close(
    learner.init_gradient(ours.grads), maml.grads, rtol=2e-5, atol=1e-7
  )
  assert jax.tree.structure(ours.grads.rule) == jax.tree.structure(meta)
  assert float(optax.tree.norm(ours.grads.rule)) > 0


def test_maml_meta_trains_a_learned_lstm_rule_with_its_init():
  model, tasks, _, params = setup()
  rule = lopt.lstm_rule(hidden_size=4, layers=1)
  meta = rule.meta_init(jax.random.key(2))
  learner = jmeta.gradient_learner(
    model,
    jmeta.losses.mean_squared_error,
    rule=lopt.as_inner_rule(rule, meta),
    estimator=estimators.second_order(),
    inner_steps=2,
  )
  trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-2))
  state = trainer.init(learner.init(params))
  losses = []
  for step in range(3):
    state, metrics = trainer.step(state, tasks.sample(jax.random.key(10 + step), 4))
    losses.append(float(metrics['loss']))
  jmeta.raise_if_nonfinite(state)
  assert np.all(np.isfinite(losses))
  # Both meta-parameters moved: the model's init and the LSTM rule's weights.
  for before, after in ((params, state.params.init), (meta, state.params.rule)):
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, after)
    assert all(jax.tree.leaves(moved)), moved
  query = tasks.sample(jax.random.key(99), 1)
  outputs = learner.predict(
    state.params,
    query.support_inputs[0],
    query.support_targets[0],
    query.query_inputs[0],
  )
  assert outputs.shape == query.query_targets[0].shape
