"""precompile compiles once for the loop that follows; release_host_memory trims."""

import contextlib
import ctypes

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import jmeta
from jmeta.losses import mean_squared_error

TASKS = jmeta.sinusoid_tasks(5, 5)
GLIBC = hasattr(ctypes.CDLL(None), 'malloc_trim')
# JAX records this around every XLA compilation (or persistent-cache load).
BACKEND_COMPILE = '/jax/core/compile/backend_compile_duration'


@contextlib.contextmanager
def counting_compiles():
  count = [0]

  def listener(event, duration, **kwargs):
    if event == BACKEND_COMPILE:
      count[0] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield count
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def trainer_and_state(jit=True):
  model = jmeta.mlp((8,), 1)
  estimator = jmeta.maml(
    model, mean_squared_error, inner_steps=2, inner_learning_rate=0.05
  )
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3), jit=jit)
  return trainer, trainer.init(model.init(jax.random.key(0), jnp.zeros((1, 1))))


def test_the_step_after_precompile_runs_without_compiling_again():
  trainer, state = trainer_and_state()
  batch = TASKS.sample(jax.random.key(1), 4)
  with counting_compiles() as compiles:
    compiled = jmeta.precompile(trainer.step, state, batch)
    assert compiles[0] >= 1
    before = compiles[0]
    state1, metrics = trainer.step(state, batch)
    state2, _ = trainer.step(state1, TASKS.sample(jax.random.key(2), 4))
    jax.block_until_ready(state2)
    assert compiles[0] == before, 'trainer.step compiled again after precompile'
    # Another meta-batch size does compile, so the counter sees compiles.
    trainer.step(state2, TASKS.sample(jax.random.key(3), 2))
    assert compiles[0] > before
  expected_state, expected_metrics = compiled(state, batch)
  chex.assert_trees_all_equal((state1, metrics), (expected_state, expected_metrics))


def test_precompile_refuses_a_function_that_is_not_jitted():
  trainer, state = trainer_and_state()
  with pytest.raises(ValueError, match='needs a jitted function'):
    jmeta.precompile(lambda s: s, state)
  unjitted, _ = trainer_and_state(jit=False)
  with pytest.raises(ValueError, match=r'jax\.jit'):
    jmeta.precompile(unjitted.step, state, TASKS.sample(jax.random.key(0), 2))


def resident_mib() -> float:
  with open('/proc/self/status') as f:
    line = next(line for line in f if line.startswith('VmRSS:'))
  return int(line.split()[1]) / 1024


@pytest.mark.skipif(not GLIBC, reason='malloc_trim is glibc-only; elsewhere a no-op')
def test_release_host_memory_returns_freed_heap_pages_to_the_os():
  libc = ctypes.CDLL(None)
  libc.malloc.restype = ctypes.c_void_p
  libc.malloc.argtypes = [ctypes.c_size_t]
  libc.free.argtypes = [ctypes.c_void_p]
  # 160 MiB in 4 KiB blocks, below the mmap threshold so they live on the heap;
  # the last one stays allocated, so free() alone cannot shrink the heap's top.
  size, count = 4096, 40_960
  blocks = [libc.malloc(size) for _ in range(count)]
  for b in blocks:
    ctypes.memset(b, 1, size)
  for b in blocks[:-1]:
    libc.free(b)
  held = resident_mib()
  assert jmeta.release_host_memory()
  released = resident_mib()
  libc.free(blocks[-1])
  assert held - released > 100, (held, released)
