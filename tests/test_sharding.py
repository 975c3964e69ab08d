"""Task-axis sharding over 8 host CPU devices: the same meta-gradient as one device.

XLA must be told about the 8 devices before JAX starts, so every check runs in one
subprocess (this file run as a script, which prints a JSON line of results) and
each test reads its own check's result.
"""

import json
import os
import pathlib
import subprocess
import sys
import traceback

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import PartitionSpec as P

# tests/ is on sys.path both under pytest and when this file runs as a script.
from test_compilation import counting_compiles

import jmeta
from jmeta.losses import mean_squared_error

DEVICES = 8
TASKS = jmeta.sinusoid_tasks(5, 5)
TOL = dict(rtol=1e-5, atol=1e-7)


def maml(model, batching='vmap'):
  return jmeta.maml(
    model,
    mean_squared_error,
    inner_steps=1,
    inner_learning_rate=0.05,
    batching=batching,
  )


def initial_params(model):
  return model.init(jax.random.key(42), jnp.zeros((1, 1)))


def check_batch_is_sharded():
  mesh = jmeta.task_mesh()
  assert mesh.devices.size == DEVICES and mesh.axis_names == ('tasks',)
  batch = jmeta.shard_task_batch(TASKS.sample(jax.random.key(0), 16), mesh)
  for x in batch:
    assert x.sharding.spec == P('tasks'), x.sharding
    shards = x.addressable_shards
    assert len(shards) == DEVICES
    assert {s.data.shape[0] for s in shards} == {2}  # 16 tasks / 8 devices
    assert len({s.device for s in shards}) == DEVICES


def check_meta_gradient_matches_one_device():
  mesh = jmeta.task_mesh()
  model = jmeta.mlp((8,), 1)
  params = initial_params(model)
  for batching in ('vmap', 'map'):
    est = maml(model, batching)
    sharded = jax.jit(jmeta.sharded_meta_gradient(est.meta_gradient, mesh))
    for num_tasks in (8, 16):
      batch = TASKS.sample(jax.random.key(num_tasks), num_tasks)
      expected = jax.jit(est.meta_gradient)(params, batch)
      got = sharded(params, jmeta.shard_task_batch(batch, mesh))
      chex.assert_trees_all_close(got, expected, **TOL)
      for x in jax.tree.leaves(got):
        assert x.sharding.is_fully_replicated
    # 'map' scans over each device's own tasks: the batch is never gathered, only
    # the mean is all-reduced.
    hlo = sharded.lower(params, batch).compile().as_text()
    assert 'all-gather' not in hlo and 'all-reduce' in hlo, batching


def counting(model):
  calls = [0]

  def apply(params, inputs, **kwargs):
    calls[0] += 1
    return model.apply(params, inputs, **kwargs)

  return jmeta.Model(model.init, apply), calls


def check_trainer_matches_one_device():
  mesh = jmeta.task_mesh()
  model, calls = counting(jmeta.mlp((8,), 1))
  params = initial_params(model)
  batches = [TASKS.sample(k, 16) for k in jax.random.split(jax.random.key(1), 3)]
  one = jmeta.make_meta_trainer(maml(model), optax.adam(1e-2))
  many = jmeta.make_meta_trainer(maml(model), optax.adam(1e-2), mesh=mesh)
  expected, got = one.init(params), many.init(params)
  traced = None
  for batch in batches:
    expected, expected_metrics = one.step(expected, batch)
    got, metrics = many.step(got, jmeta.shard_task_batch(batch, mesh))
    traced = traced or calls[0]
  assert calls[0] == traced, 'the sharded step re-traced on its own output state'
  chex.assert_trees_all_close(got.params, expected.params, **TOL)
  chex.assert_trees_all_close(got.opt_state, expected.opt_state, **TOL)
  chex.assert_trees_all_close(metrics, expected_metrics, **TOL)
  assert int(got.step) == 3
  for x in jax.tree.leaves((got, metrics)):
    assert x.sharding.is_fully_replicated and len(x.sharding.device_set) == DEVICES
  # Tasks sampled inside the step, with 'auto' batching ('map' on CPU).
  sample = lambda key: TASKS.sample(key, 8)  # noqa: E731
  one = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model, 'auto'), optax.sgd(0.1)), sample
  )
  many = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model, 'auto'), optax.sgd(0.1), mesh=mesh), sample
  )
  expected, got = one.init(params), many.init(params)
  for key in jax.random.split(jax.random.key(2), 3):
    expected, _ = one.step(expected, key)
    got, _ = many.step(got, key)
  chex.assert_trees_all_close(got.params, expected.params, **TOL)


def check_precompiled_sharded_step_does_not_compile_again():
  mesh = jmeta.task_mesh()
  model = jmeta.mlp((8,), 1)
  data = jmeta.replicate(jnp.arange(3.0), mesh)  # a dataset passed as an argument
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(maml(model), optax.adam(1e-2), mesh=mesh),
    lambda key, data: TASKS.sample(key, 16),
  )
  state = trainer.init(initial_params(model))
  root = jax.random.key(5)
  with counting_compiles() as compiles:
    jmeta.precompile(trainer.step, state, jax.random.fold_in(root, 0), data)
    assert compiles[0] >= 1
    before = compiles[0]
    # As the Omniglot loop calls it: a fresh key each step, the state it returned.
    for step in range(3):
      state, _ = trainer.step(state, jax.random.fold_in(root, step), data)
    jax.block_until_ready(state)
    assert compiles[0] == before, 'the sharded step compiled again after precompile'


def check_indivisible_batch_raises():
  mesh = jmeta.task_mesh()
  batch = TASKS.sample(jax.random.key(3), 6)
  message = r'6 tasks .* 8 devices .* multiple of 8'
  with pytest.raises(ValueError, match=message):
    jmeta.shard_task_batch(batch, mesh)
  model = jmeta.mlp((8,), 1)
  trainer = jmeta.make_meta_trainer(maml(model), optax.sgd(0.1), mesh=mesh)
  with pytest.raises(ValueError, match=message):
    trainer.step(trainer.init(initial_params(model)), batch)
  with pytest.raises(ValueError, match="no axis 'batch'"):
    jmeta.task_sharding(mesh, 'batch')


def check_mesh_for_a_meta_batch_uses_the_devices_that_divide_it():
  devices = jax.devices()
  for tasks, count in ((16, 8), (12, 6), (10, 5), (7, 7), (11, 1), (1, 1)):
    mesh = jmeta.task_mesh(num_tasks=tasks)
    assert list(mesh.devices) == devices[:count], (tasks, mesh)
    batch = jmeta.shard_task_batch(TASKS.sample(jax.random.key(4), tasks), mesh)
    assert {s.data.shape[0] for s in batch.support_inputs.addressable_shards} == {
      tasks // count
    }


def check_a_learner_that_carries_state_runs_on_one_device_only():
  model = jmeta.mlp((8,), 1)
  learner = jmeta.reptile(
    model,
    mean_squared_error,
    inner_steps=2,
    inner_optimizer=optax.adam(0.01, b1=0.0),
    persistent_inner_state=True,
  )
  meta_params = learner.init(initial_params(model))
  trainer = jmeta.make_meta_trainer(learner, optax.sgd(0.5), mesh=jmeta.task_mesh())
  with pytest.raises(ValueError, match='cannot split the meta-batch over the 8'):
    trainer.init(meta_params)
  # A one-device mesh runs it as no mesh does, the step count still an integer.
  batch = TASKS.sample(jax.random.key(5), 3)
  one = jmeta.task_mesh(num_tasks=1)
  on_mesh = jmeta.make_meta_trainer(learner, optax.sgd(0.5), mesh=one)
  plain = jmeta.make_meta_trainer(learner, optax.sgd(0.5))
  got, _ = on_mesh.step(on_mesh.init(meta_params), jmeta.shard_task_batch(batch, one))
  want, _ = plain.step(plain.init(meta_params), batch)
  chex.assert_trees_all_close(got.params, want.params, **TOL)
  assert got.params.inner_state[0].count.dtype == jnp.int32


CHECKS = {name: fn for name, fn in globals().items() if name.startswith('check_')}


def run_checks() -> dict[str, str]:
  """Runs every check; 'ok' or the traceback for each."""
  assert jax.device_count() == DEVICES, jax.devices()
  results = {}
  for name, check in CHECKS.items():
    try:
      check()
      results[name] = 'ok'
    except Exception:  # noqa: BLE001 - reported to the parent test
      results[name] = traceback.format_exc()
  return results


@pytest.fixture(scope='module')
def results():
  repo = pathlib.Path(__file__).parents[1]
  flags = f'--xla_force_host_platform_device_count={DEVICES}'
  env = dict(
    os.environ,
    XLA_FLAGS=' '.join(filter(None, [os.environ.get('XLA_FLAGS'), flags])),
    JAX_PLATFORMS='cpu',
  )
  proc = subprocess.run(
    [sys.executable, __file__],
    capture_output=True,
    text=True,
    cwd=repo,
    env=env,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('num_tasks', [0, -2, 2.0, True])
def test_task_mesh_refuses_a_task_count_that_is_not_a_positive_int(num_tasks):
  with pytest.raises(ValueError, match='num_tasks must be a positive int'):
    jmeta.task_mesh(num_tasks=num_tasks)


@pytest.mark.parametrize('name', sorted(CHECKS))
def test_on_eight_devices(results, name):
  assert results[name] == 'ok', results[name]


if __name__ == '__main__':
  print(json.dumps(run_checks()))
