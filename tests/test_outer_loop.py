"""The outer loop: one optax step per batch, compiled once, reproducible, NaN-safe."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jmeta
from jmeta.losses import mean_squared_error

NUM_TASKS = 4
TASKS = jmeta.sinusoid_tasks(5, 5)


def sample(key, num_tasks=NUM_TASKS):
  return TASKS.sample(key, num_tasks)


def maml(model, **kwargs):
  return jmeta.maml(
    model, mean_squared_error, inner_steps=1, inner_learning_rate=0.05, **kwargs
  )


def initial_params(model):
  return model.init(jax.random.key(42), jnp.zeros((1, 1)))


def test_step_is_one_optax_update_of_the_meta_gradient():
  model = jmeta.mlp((8,), 1)
  est = maml(model, batching='vmap')
  params = initial_params(model)
  batch = sample(jax.random.key(0))
  trainer = jmeta.make_meta_trainer(est, optax.sgd(0.1))
  state, metrics = trainer.step(trainer.init(params), batch)
  grads, expected_metrics = jax.jit(est.meta_gradient)(params, batch)
  expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
  chex.assert_trees_all_close(state.params, expected, rtol=1e-5, atol=1e-7)
  chex.assert_trees_all_close(metrics, expected_metrics, rtol=1e-5, atol=1e-7)
  assert int(state.step) == 1 and int(state.nonfinite_step) == -1
  jmeta.raise_if_nonfinite(state)  # a finite run does not raise

  eager = jmeta.make_meta_trainer(est, optax.sgd(0.1), jit=False)
  eager_state, _ = eager.step(eager.init(params), batch)
  chex.assert_trees_all_close(eager_state.params, state.params, rtol=1e-5, atol=1e-7)


def adam_trainer(model):
  return jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model), optax.adam(1e-2)), sample
  )


def train(trainer, model, key, steps=5):
  """``trainer`` run for ``steps`` steps from ``key``."""
  state = trainer.init(initial_params(model))
  for step_key in jax.random.split(key, steps):
    state, metrics = trainer.step(state, step_key)
  return state, metrics


def test_training_is_bitwise_reproducible_from_a_key():
  model = jmeta.mlp((8,), 1)
  # Two separately built trainers: each compiles its own step.
  a, metrics_a = train(adam_trainer(model), model, jax.random.key(7))
  trainer = adam_trainer(model)
  b, metrics_b = train(trainer, model, jax.random.key(7))
  chex.assert_trees_all_equal(a.params, b.params)
  chex.assert_trees_all_equal(a.opt_state, b.opt_state)
  chex.assert_trees_all_equal(metrics_a, metrics_b)
  assert int(a.step) == 5
  # The run moved the params, and a different key gives a different run.
  init = initial_params(model)
  assert not np.array_equal(a.params['layer_0']['w'], init['layer_0']['w'])
  c, _ = train(trainer, model, jax.random.key(8))
  assert not np.array_equal(a.params['layer_0']['w'], c.params['layer_0']['w'])


def counting_model():
  """An MLP whose apply counts its Python calls: they happen only while tracing."""
  base = jmeta.mlp((4,), 1)
  calls = [0]

  def apply(params, inputs, *, batch_norm=jmeta.TRANSDUCTIVE):
    calls[0] += 1
    return base.apply(params, inputs, batch_norm=batch_norm)

  return jmeta.Model(base.init, apply), calls


def test_step_is_compiled_once_per_batch_shape():
  model, calls = counting_model()
  trainer = jmeta.make_meta_trainer(maml(model), optax.sgd(0.01))
  state = trainer.init(initial_params(model))
  keys = jax.random.split(jax.random.key(0), 7)
  state, _ = trainer.step(state, sample(keys[0]))
  traced = calls[0]
  assert traced > 0
  for key in keys[1:6]:
    state, _ = trainer.step(state, sample(key))
  jax.block_until_ready(state)
  assert calls[0] == traced, 'the step re-traced for a batch of the same shape'
  # A batch of another shape must retrace, so the counter does see retracing.
  state, _ = trainer.step(state, sample(keys[6], num_tasks=2))
  assert calls[0] > traced


def test_step_with_sampler_is_compiled_once():
  model, calls = counting_model()
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model), optax.sgd(0.01)), sample
  )
  state = trainer.init(initial_params(model))
  keys = jax.random.split(jax.random.key(1), 6)
  state, _ = trainer.step(state, keys[0])
  traced = calls[0]
  assert traced > 0
  for key in keys[1:]:
    state, _ = trainer.step(state, key)
  assert calls[0] == traced
  assert int(state.step) == 6


def run_steps(trainer, state, batches):
  """Runs the steps; returns the final state and the params before each step."""
  history = []
  for batch in batches:
    history.append(state.params)
    state, _ = trainer.step(state, batch)
  return state, history


def test_nan_in_a_batch_freezes_params_and_raises_with_the_step():
  model = jmeta.mlp((8,), 1)
  trainer = jmeta.make_meta_trainer(maml(model), optax.adam(1e-2))
  batches = [sample(k) for k in jax.random.split(jax.random.key(3), 6)]
  bad = batches[3].query_targets.at[1, 2, 0].set(jnp.nan)
  batches[3] = batches[3]._replace(query_targets=bad)
  state, history = run_steps(trainer, trainer.init(initial_params(model)), batches)
  assert int(state.nonfinite_step) == 3
  assert int(state.step) == 6
  chex.assert_trees_all_equal(state.params, history[3])
  chex.assert_tree_all_finite(state.params)
  # Steps before the NaN did update the params.
  assert not np.array_equal(history[3]['layer_0']['w'], history[2]['layer_0']['w'])
  with pytest.raises(jmeta.NonFiniteMetaLossError, match='non-finite at step 3'):
    jmeta.raise_if_nonfinite(state)
  assert issubclass(jmeta.NonFiniteMetaLossError, FloatingPointError)


def test_divergent_learning_rate_stops_at_the_first_nonfinite_step():
  model = jmeta.mlp((8,), 1)
  trainer = jmeta.make_meta_trainer(maml(model), optax.sgd(1e25))
  batches = [sample(k) for k in jax.random.split(jax.random.key(4), 5)]
  state, history = run_steps(trainer, trainer.init(initial_params(model)), batches)
  bad = int(state.nonfinite_step)
  assert 0 < bad < len(batches)  # step 0 is finite; the huge step then diverges
  chex.assert_trees_all_equal(state.params, history[bad])
  chex.assert_tree_all_finite(state.params)
  # Nothing non-finite was seen before ``bad``: the state just before it is clean.
  pre_state = trainer.init(initial_params(model))
  for batch in batches[:bad]:
    pre_state, metrics = trainer.step(pre_state, batch)
    assert np.isfinite(metrics['loss'])
  jmeta.raise_if_nonfinite(pre_state)
  with pytest.raises(jmeta.NonFiniteMetaLossError, match=f'at step {bad}'):
    jmeta.raise_if_nonfinite(state)


def test_sampler_data_passed_as_arguments_equals_a_closure():
  model = jmeta.mlp((8,), 1)
  params = initial_params(model)
  bank = jax.random.normal(jax.random.key(3), (50, 1))

  def from_bank(key, bank):
    idx = jax.random.randint(key, (NUM_TASKS, 7), 0, bank.shape[0])
    x = bank[idx]
    return jmeta.TaskBatch(x[:, :3], jnp.sin(x[:, :3]), x[:, 3:], jnp.sin(x[:, 3:]))

  with_args = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model), optax.sgd(0.1)), from_bank
  )
  closure = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model), optax.sgd(0.1)),
    lambda key: from_bank(key, bank),
  )
  a, _ = with_args.step(with_args.init(params), jax.random.key(4), bank)
  b, _ = closure.step(closure.init(params), jax.random.key(4))
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  with pytest.raises(TypeError, match='positional arguments but 3 were given'):
    plain = jmeta.make_meta_trainer(maml(model), optax.sgd(0.1))
    plain.step(plain.init(params), sample(jax.random.key(5)), bank)


def scheduled(learner):
  """``learner`` with a schedule: its metrics report the step it was given."""

  def meta_gradient(params, batch, step=None):
    grads, metrics = learner.meta_gradient(params, batch)
    return jmeta.MetaGradient(grads, {**metrics, 'iteration': step})

  return learner._replace(meta_gradient=meta_gradient)


@pytest.mark.parametrize('sharded', [False, True])
def test_meta_gradient_at_gets_the_step_without_retracing(sharded):
  model, calls = counting_model()
  mesh = jmeta.task_mesh() if sharded else None  # one device here: the path runs
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(scheduled(maml(model)), optax.sgd(0.01), mesh=mesh), sample
  )
  state = trainer.init(initial_params(model))
  for t, key in enumerate(jax.random.split(jax.random.key(2), 4)):
    state, metrics = trainer.step(state, key)
    assert int(metrics['iteration']) == t
    if t == 0:
      traced = calls[0]
  assert calls[0] == traced, 'the step re-traced'
  # The gradient itself is the estimator's: equal to a trainer without the schedule.
  plain = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model), optax.sgd(0.01)), sample
  )
  expected, _ = train(plain, model, jax.random.key(2), steps=4)
  chex.assert_trees_all_close(state.params, expected.params, rtol=1e-6, atol=1e-7)


def test_unknown_mesh_axis_fails_when_the_trainer_is_built():
  with pytest.raises(ValueError, match="no axis 'batch'"):
    jmeta.make_meta_trainer(
      maml(jmeta.mlp((4,), 1)),
      optax.sgd(0.1),
      mesh=jmeta.task_mesh(),
      axis_name='batch',
    )


# More than any machine has: XLA refuses the allocation at once, touching nothing.
HUGE = 2**38  # float32 elements, 1 TiB


def _huge_estimator():
  def meta_gradient(params, batch, step=None):
    del batch
    # An output buffer of 1 TiB, so it cannot be optimised away.
    big = jnp.zeros((HUGE,), jnp.float32) + params['w'].sum()
    return jmeta.MetaGradient(params, {'loss': jnp.zeros(()), 'big': big})

  identity = lambda tree: tree  # noqa: E731
  return jmeta.MetaLearner('huge', identity, meta_gradient, None, None, identity)


def test_out_of_memory_names_the_knobs_that_reduce_memory():
  trainer = jmeta.make_meta_trainer(_huge_estimator(), optax.sgd(0.1))
  state = trainer.init({'w': jnp.ones(2)})
  batch = jmeta.TaskBatch(*[jnp.zeros((2, 1, 1))] * 4)
  with pytest.raises(jmeta.MetaStepOutOfMemoryError) as info:
    trainer.step(state, batch)
  message = str(info.value)
  assert 'RESOURCE_EXHAUSTED' in message
  for knob in ("batching='chunked'", 'remat=True', 'fomaml', 'smaller meta-batch'):
    assert knob in message
  assert isinstance(info.value.__cause__, jax.errors.JaxRuntimeError)
  # Other runtime errors pass through unchanged, and the step still lowers ahead of
  # time (compiled memory can be read before running).
  assert not jmeta.outer_loop.is_out_of_memory(jax.errors.JaxRuntimeError('INTERNAL'))
  compiled = trainer.step.lower(state, batch).compile()
  assert compiled.memory_analysis().output_size_in_bytes >= 4 * HUGE


def relu_net():
  """``relu(x w1 + b1) w2``: no output bias, so a dead hidden layer ends every
  gradient."""

  def init(key, inputs):
    k1, k2 = jax.random.split(key)
    return {
      'w1': jax.random.normal(k1, (inputs.shape[-1], 8)),
      'b1': jnp.zeros(8),
      'w2': jax.random.normal(k2, (8, 1)) / 3,
    }

  def apply(params, inputs, **_):
    return jax.nn.relu(inputs @ params['w1'] + params['b1']) @ params['w2']

  return jmeta.Model(init, apply)


def dead(params):
  """``params`` with every hidden unit negative on every input."""
  return {**params, 'w1': jnp.zeros_like(params['w1']), 'b1': -jnp.ones(8)}


def zero_bits(state):
  """The steps whose meta-gradient ``state`` records as exactly zero, latest first."""
  bits = int(state.zero_gradients)
  return [i for i in range(32) if bits >> i & 1]


def test_exactly_zero_meta_gradients_are_counted_over_the_last_32_steps():
  model = relu_net()
  trainer = jmeta.make_meta_trainer(maml(model), optax.sgd(0.1))
  live = initial_params(model)
  batches = [sample(k) for k in jax.random.split(jax.random.key(5), 40)]
  state, _ = run_steps(trainer, trainer.init(live), batches[:2])
  assert zero_bits(state) == []
  grads, _ = maml(model).meta_gradient(dead(live), batches[2])
  assert all(not np.any(g) for g in jax.tree.leaves(grads))  # the premise

  # The units die at step 2: steps 2-6 are zero, and SGD leaves the params there.
  state, history = run_steps(trainer, state._replace(params=dead(live)), batches[2:7])
  assert zero_bits(state) == [0, 1, 2, 3, 4] and int(state.step) == 7
  chex.assert_trees_all_equal(history[0], state.params)
  jmeta.raise_if_failed(state, zero_gradient_steps=6)  # 5 zeros: not yet
  with pytest.raises(
    jmeta.ZeroMetaGradientError, match='exactly zero at 5 of the last 7 steps'
  ):
    jmeta.raise_if_failed(state, zero_gradient_steps=5)
  assert issubclass(jmeta.ZeroMetaGradientError, FloatingPointError)
  jmeta.raise_if_nonfinite(state)  # the narrower check does not look at it

  # A live step in between does not clear them: the dead ones still count.
  state, _ = trainer.step(state._replace(params=live), batches[7])
  assert zero_bits(state) == [1, 2, 3, 4, 5]
  state, _ = run_steps(trainer, state._replace(params=dead(live)), batches[8:35])
  assert zero_bits(state) == [i for i in range(32) if i != 27]
  with pytest.raises(jmeta.ZeroMetaGradientError, match='at 31 of the last 32 steps'):
    jmeta.raise_if_failed(state)  # the default: 16 of 32
  # Live steps push them out of the window: 5 of them leave 27 zeros of 32.
  state, _ = run_steps(trainer, state._replace(params=live), batches[35:40])
  assert zero_bits(state) == list(range(5, 32))
  jmeta.raise_if_failed(state, zero_gradient_steps=28)
  for bad in (0, 33):
    with pytest.raises(ValueError, match=f'in \\[1, 32\\].*got {bad}'):
      jmeta.raise_if_failed(state, zero_gradient_steps=bad)


def test_a_nan_meta_gradient_is_not_counted_as_zero():
  model = relu_net()
  trainer = jmeta.make_meta_trainer(maml(model), optax.adam(1e-2))
  batch = sample(jax.random.key(6))
  batch = batch._replace(query_targets=batch.query_targets.at[0, 0, 0].set(jnp.nan))
  state, _ = trainer.step(trainer.init(initial_params(model)), batch)
  assert zero_bits(state) == [] and int(state.nonfinite_step) == 0
  with pytest.raises(jmeta.NonFiniteMetaLossError):
    jmeta.raise_if_failed(state, zero_gradient_steps=1)
