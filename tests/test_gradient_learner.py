"""Inner rules and gradient estimators pair freely: pairings that no algorithm file
names, checked against their closed forms, trained through the public API, and the
README's "Adding an algorithm" example run as written."""

import pathlib
import re
import sys

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

# tests/ is on sys.path under pytest.
from test_compilation import counting_compiles

import jmeta
from jmeta import estimators, inner_rules
from jmeta.losses import mean_squared_error

README = pathlib.Path(__file__).parents[1] / 'README.md'
MODEL = jmeta.mlp((8,), 1)
TASKS = jmeta.sinusoid_tasks(num_support=5, num_query=7)
LR = 0.05


def _setup(seed=0, num_tasks=3):
  """Params and a task batch, in float64 when x64 is on (closed forms to 1e-10)."""
  params = MODEL.init(jax.random.key(seed), jnp.zeros((1, 1)))
  batch = TASKS.sample(jax.random.key(seed + 1), num_tasks)
  dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
  cast = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)  # noqa: E731
  return cast(params), jmeta.TaskBatch(*cast(tuple(batch)))


def test_first_order_meta_sgd_matches_fomaml_and_its_closed_form(x64):
  params, batch = _setup()
  learner = jmeta.gradient_learner(
    MODEL,
    mean_squared_error,
    rule=inner_rules.learned_rates(LR),
    estimator=estimators.first_order(),
    inner_steps=1,
  )
  meta_params = learner.init(params)
  got = learner.meta_gradient(meta_params, batch)
  fomaml = jmeta.fomaml(
    MODEL, mean_squared_error, inner_steps=1, inner_learning_rate=LR
  )
  want = fomaml.meta_gradient(params, batch)
  # d/dtheta with the inner gradient held constant is FOMAML's gradient, and with
  # phi = theta - alpha * g, d/dalpha = -g * grad L_query(phi), averaged over tasks.
  chex.assert_trees_all_close(got.grads.init, want.grads, rtol=1e-12)

  def rate_gradient(task):
    task = jmeta.Task(*task)

    def support(p):
      return mean_squared_error(
        MODEL.apply(p, task.support_inputs), task.support_targets
      )

    g = jax.grad(support)(params)
    phi = jax.tree.map(lambda p, gi: p - LR * gi, params, g)
    query = jax.grad(
      lambda p: mean_squared_error(
        MODEL.apply(p, task.query_inputs), task.query_targets
      )
    )(phi)
    return jax.tree.map(lambda gi, qi: -gi * qi, g, query)

  per_task = [rate_gradient([x[i] for x in batch]) for i in range(batch.num_tasks)]
  mean = jax.tree.map(lambda *xs: sum(xs) / len(xs), *per_task)
  chex.assert_trees_all_close(got.grads.rule, mean, rtol=1e-10)
  # Second order differs: the test can tell the estimators apart.
  exact = jmeta.meta_sgd(MODEL, mean_squared_error, inner_learning_rate=LR)
  second = exact.meta_gradient(meta_params, batch).grads.init
  assert not np.allclose(second['layer_0']['w'], got.grads.init['layer_0']['w'])


def test_anil_with_reptile_moves_only_the_head_by_theta_minus_phi(x64):
  params, batch = _setup()
  learner = jmeta.gradient_learner(
    MODEL,
    mean_squared_error,
    rule=inner_rules.head_only(inner_rules.sgd(LR), 'layer_1'),
    estimator=estimators.reptile(),
    inner_steps=3,
  )
  grads = learner.meta_gradient(learner.init(params), batch).grads
  chex.assert_trees_all_equal(
    grads['layer_0'], jax.tree.map(jnp.zeros_like, params['layer_0'])
  )
  loop = []
  for i in range(batch.num_tasks):
    adapted = jmeta.anil_adapt(
      MODEL,
      mean_squared_error,
      params,
      batch.support_inputs[i],
      batch.support_targets[i],
      steps=3,
      head='layer_1',
      learning_rate=LR,
    )
    loop.append(jax.tree.map(lambda t, p: t - p, params['layer_1'], adapted['layer_1']))
  mean = jax.tree.map(lambda *xs: sum(xs) / len(xs), *loop)
  chex.assert_trees_all_close(grads['layer_1'], mean, rtol=1e-12)
  assert any(np.any(g != 0) for g in jax.tree.leaves(grads['layer_1']))


@pytest.mark.parametrize(
  'rule, estimator',
  [
    (inner_rules.learned_rates(LR), estimators.first_order()),
    (inner_rules.head_only(inner_rules.sgd(LR), 'layer_1'), estimators.reptile()),
  ],
)
def test_new_pairings_train_through_the_public_api(rule, estimator):
  params, batch = _setup(num_tasks=8)
  learner = jmeta.gradient_learner(
    MODEL, mean_squared_error, rule=rule, estimator=estimator, inner_steps=2
  )
  trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-2))
  state = trainer.init(learner.init(params))

  def query_mse(meta_params):
    out = jmeta.evaluate(
      learner, meta_params, batch, lambda o, y: {'mse': mean_squared_error(o, y)}
    )
    return float(out['mse'].mean())

  before = query_mse(state.params)
  for _ in range(60):
    state, _ = trainer.step(state, batch)
  jmeta.raise_if_nonfinite(state)
  assert query_mse(state.params) < 0.8 * before


def test_unsupported_pairings_are_refused_with_the_fix():
  with pytest.raises(ValueError, match='second_order\\(\\) or first_order\\(\\)'):
    jmeta.gradient_learner(
      MODEL,
      mean_squared_error,
      rule=inner_rules.learned_rates(LR),
      estimator=estimators.reptile(),
      inner_steps=1,
    )
  with pytest.raises(ValueError, match='inner_rules.proximal'):
    jmeta.gradient_learner(
      MODEL,
      mean_squared_error,
      rule=inner_rules.sgd(LR),
      estimator=estimators.implicit(),
      inner_steps=1,
    )
  with pytest.raises(ValueError, match='inner learning rate must be > 0'):
    inner_rules.sgd(-0.1)


def test_predict_is_adapt_then_apply():
  params, batch = _setup()
  learner = jmeta.maml(
    MODEL, mean_squared_error, inner_steps=1, inner_learning_rate=LR, test_steps=4
  )
  task = jmeta.Task(*(x[0] for x in batch))
  got = learner.predict(
    params, task.support_inputs, task.support_targets, task.query_inputs
  )
  adapted = jmeta.adapt(
    MODEL,
    mean_squared_error,
    params,
    task.support_inputs,
    task.support_targets,
    steps=4,
    learning_rate=LR,
  )
  np.testing.assert_array_equal(got, MODEL.apply(adapted, task.query_inputs))


def test_readme_adding_an_algorithm_example_trains(monkeypatch):
  sys.path.insert(0, str(pathlib.Path(__file__).parent / 'experiments'))
  import short_runs  # tests/experiments/short_runs.py

  text = README.read_text()
  section = text[text.index('**Adding an algorithm**') :]
  factory_code, config_code = re.findall(r'```python\n(.*?)```', section, re.S)[:2]
  namespace = {}
  exec(compile(factory_code, str(README), 'exec'), namespace)  # noqa: S102
  monkeypatch.setitem(jmeta.LEARNERS, 'anil_reptile', namespace['anil_reptile'])
  config_namespace = {}
  exec(compile(config_code, str(README), 'exec'), config_namespace)  # noqa: S102
  config = config_namespace['get_config']('5w1s')
  config.model.filters = 4
  config.meta_batch_size = 2
  run = short_runs.train_briefly(config)
  assert np.all(np.isfinite(run['losses'])) and len(run['losses']) == short_runs.STEPS


# A persistent inner state (Reptile's reference code keeps its inner Adam state
# from task to task and update to update), against Python loops that do the same.

ADAM = optax.adam(0.02, b1=0.0, eps_root=1e-8)


def _support_loss(params, task):
  return mean_squared_error(
    MODEL.apply(params, task.support_inputs), task.support_targets
  )


def _loop_adapt(params, task, state, steps):
  """phi after ``steps`` Adam updates on the support set, and Adam's state."""
  for _ in range(steps):
    grads = jax.grad(_support_loss)(params, task)
    updates, state = ADAM.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _tasks(batch):
  return [jmeta.Task(*(x[i] for x in batch)) for i in range(batch[0].shape[0])]


def _persistent(factory=jmeta.reptile, **options):
  return factory(
    MODEL,
    mean_squared_error,
    inner_steps=3,
    inner_optimizer=ADAM,
    persistent_inner_state=True,
    **options,
  )


def test_persistent_inner_state_trains_as_a_loop_that_never_resets_adam(x64):
  params, _ = _setup()
  batches = [_setup(seed=s, num_tasks=3)[1] for s in (3, 5)]
  learner = _persistent()
  trainer = jmeta.make_meta_trainer(learner, optax.sgd(0.5))
  state = trainer.init(learner.init(params))
  for batch in batches:
    state, _ = trainer.step(state, batch)
  # Reptile's reference loop: tasks in order, Adam's state never reset; the outer
  # SGD step moves theta by 0.5 (mean phi - theta).
  theta, adam = params, ADAM.init(params)
  for batch in batches:
    phis = []
    for task in _tasks(batch):
      phi, adam = _loop_adapt(theta, task, adam, 3)
      phis.append(phi)
    mean = jax.tree.map(lambda *p: sum(p) / len(p), *phis)
    theta = jax.tree.map(lambda t, m: t + 0.5 * (m - t), theta, mean)
  chex.assert_trees_all_close(state.params.params, theta, rtol=1e-10, atol=1e-12)
  chex.assert_trees_all_close(state.params.inner_state, adam, rtol=1e-10, atol=1e-12)
  assert int(state.params.inner_state[0].count) == 2 * 3 * 3
  # The outer optimizer sees only the model's params.
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(
    optax.sgd(0.5).init(params)
  )
  # Resetting Adam per task trains to other params: the test can tell them apart.
  fresh = jmeta.reptile(MODEL, mean_squared_error, inner_steps=3, inner_optimizer=ADAM)
  fresh_trainer = jmeta.make_meta_trainer(fresh, optax.sgd(0.5))
  fresh_state = fresh_trainer.init(params)
  for batch in batches:
    fresh_state, _ = fresh_trainer.step(fresh_state, batch)
  gap = optax.tree.norm(jax.tree.map(jnp.subtract, fresh_state.params, theta))
  assert gap > 1e-3


def test_persistent_predict_adapts_from_the_carried_state(x64):
  params, batch = _setup()
  learner = _persistent(test_steps=4)
  trainer = jmeta.make_meta_trainer(learner, optax.sgd(0.5))
  state, _ = trainer.step(trainer.init(learner.init(params)), batch)
  meta_params = state.params
  task = _tasks(_setup(seed=7)[1])[0]
  got = learner.predict(
    meta_params, task.support_inputs, task.support_targets, task.query_inputs
  )
  phi, _ = _loop_adapt(meta_params.params, task, meta_params.inner_state, 4)
  np.testing.assert_allclose(got, MODEL.apply(phi, task.query_inputs), rtol=1e-10)
  phi_fresh, _ = _loop_adapt(meta_params.params, task, ADAM.init(params), 4)
  assert np.max(np.abs(got - MODEL.apply(phi_fresh, task.query_inputs))) > 1e-4


@pytest.mark.parametrize('factory', [jmeta.reptile, jmeta.maml, jmeta.fomaml])
def test_persistent_state_starts_fresh_so_the_first_task_matches_the_reset_learner(
  x64, factory
):
  params, batch = _setup(num_tasks=1)
  persistent = _persistent(factory)
  reset = factory(MODEL, mean_squared_error, inner_steps=3, inner_optimizer=ADAM)
  got = persistent.meta_gradient(persistent.init(params), batch)
  want = reset.meta_gradient(params, batch)
  chex.assert_trees_all_close(got.grads.params, want.grads, rtol=1e-12, atol=1e-14)
  chex.assert_trees_all_close(got.metrics, want.metrics, rtol=1e-12)
  chex.assert_trees_all_close(persistent.init_gradient(got.grads), want.grads)


def test_persistent_maml_differentiates_theta_with_the_carried_state_held_fixed(x64):
  params, batch = _setup(num_tasks=2)
  learner = _persistent(jmeta.maml)
  meta_params = learner.init(params)
  # A state from earlier tasks, then the meta-gradient from it.
  meta_params = meta_params._replace(
    inner_state=learner.meta_gradient(meta_params, _setup(seed=9)[1]).grads.inner_state
  )
  grads = learner.meta_gradient(meta_params, batch).grads.params

  def meta_loss(theta):
    # Each task starts from the state the task before it left at the given
    # params, a constant: no derivative flows from one task's state to the next.
    total = 0.0
    for task, adam in zip(_tasks(batch), starts):
      phi, _ = _loop_adapt(theta, task, adam, 3)
      query = mean_squared_error(
        MODEL.apply(phi, task.query_inputs), task.query_targets
      )
      total = total + query
    return total / 2

  starts, adam = [], meta_params.inner_state
  for task in _tasks(batch):
    starts.append(adam)
    _, adam = _loop_adapt(params, task, adam, 3)

  flat, unravel = jax.flatten_util.ravel_pytree(params)
  direction = jax.random.normal(jax.random.key(11), flat.shape, flat.dtype)
  eps = 1e-6
  finite = (
    meta_loss(unravel(flat + eps * direction))
    - meta_loss(unravel(flat - eps * direction))
  ) / (2 * eps)
  analytic = jnp.vdot(jax.flatten_util.ravel_pytree(grads)[0], direction)
  np.testing.assert_allclose(analytic, finite, rtol=1e-6)


def test_persistent_step_compiles_once_and_keeps_the_state_types():
  params, _ = _setup()
  batches = [_setup(seed=seed + 20)[1] for seed in range(3)]
  learner = _persistent()
  trainer = jmeta.make_meta_trainer(learner, optax.sgd(0.5))
  state = trainer.init(learner.init(params))
  types = jax.tree.map(lambda x: (x.shape, x.dtype), state)
  state, _ = trainer.step(state, batches[0])
  with counting_compiles() as compiles:
    for batch in batches[1:]:
      state, _ = trainer.step(state, batch)
    jax.block_until_ready(state)
  assert compiles[0] == 0, 'the step compiled again for a batch of the same shape'
  assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == types


def test_persistent_inner_state_refuses_what_it_cannot_do():
  params, batch = _setup()
  with pytest.raises(ValueError, match='learned rule'):
    jmeta.meta_sgd(
      MODEL, mean_squared_error, inner_steps=1, persistent_inner_state=True
    )
  with pytest.raises(ValueError, match="tasks run in order.*batching='map'"):
    _persistent(batching='vmap')
  with pytest.raises(ValueError, match='persistent_inner_state must be True or False'):
    jmeta.reptile(
      MODEL,
      mean_squared_error,
      inner_steps=1,
      inner_optimizer=ADAM,
      persistent_inner_state=1,
    )
  with pytest.raises(
    ValueError, match=r'takes InnerStateParams\(params, inner_state\)'
  ):
    _persistent().meta_gradient(params, batch)
