"""Data parallelism over tasks: the meta-batch's task axis sharded over a device mesh.

The meta-gradient is a mean over tasks, so a meta-batch of N tasks on D devices
splits into D equal blocks of N/D tasks; each device computes the mean over its own
block and an all-reduce averages the D block means, which equals the one-device
mean up to float summation order. Params and optimizer state are replicated.

One machine (several GPUs, or host CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``)::

  mesh = jmeta.task_mesh()  # a 1-D mesh over jax.devices()
  estimator = jmeta.maml(model, loss_fn, inner_steps=1, inner_learning_rate=0.4)
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3), mesh=mesh)
  state = trainer.init(params)  # replicated over the mesh
  state, metrics = trainer.step(state, jmeta.shard_task_batch(batch, mesh))

The meta-batch size must be a multiple of the number of devices: jmeta neither pads
nor drops tasks, since either would change the mean. The estimator's batching
strategy applies within each device's block ('map' scans over a device's own tasks,
so 'auto', which is 'map' on CPU, still runs the devices in parallel; 'chunked'
needs ``chunk_size`` to divide N/D).

On a multi-core CPU, the same sharding runs tasks on the cores in parallel: split
the CPU into one XLA host device per core right after importing jax, before any
JAX operation, and shard over them::

  jax.config.update('jax_num_cpu_devices', os.cpu_count())
  mesh = jmeta.task_mesh(num_tasks=meta_batch_size)

XLA:CPU parallelises each operation over the cores, but the matmuls of one task's
Conv4 are too small to keep them busy; one task stream per core did better on the
2-core benchmark machine (``benchmarks/results/cpu_meta_step.md``, the ``devices``
column). The Omniglot experiments do this by default (``--cpu_devices``).

Several hosts: start the same program on every host, initialise the distributed
runtime before anything else touches JAX, then build the mesh over the devices of
every host. Each host feeds only its own block of tasks::

  # on every host, PROCESS_ID = 0 .. NUM_PROCESSES - 1:
  # COORDINATOR=host0:1234 NUM_PROCESSES=2 PROCESS_ID=0 python train.py
  jax.distributed.initialize(
    os.environ['COORDINATOR'],
    int(os.environ['NUM_PROCESSES']),
    int(os.environ['PROCESS_ID']),
  )
  mesh = jmeta.task_mesh()  # jax.devices() lists every host's devices
  host_key = jax.random.fold_in(key, jax.process_index())  # other tasks per host
  local = family.sample(host_key, num_tasks // jax.process_count())
  batch = jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(jmeta.task_sharding(mesh), x),
    local,
  )
  state, metrics = trainer.step(state, batch)

``shard_task_batch`` and ``replicate`` take the whole (global) value, identical on
every host; use ``jax.make_array_from_process_local_data`` as above to feed only the
local block. A trainer built with ``sample_tasks`` samples inside the step: pass the
same key on every host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jmeta.learner import MetaGradient
from jmeta.models.base import Params
from jmeta.tasks.batch import TaskBatch

MetaGradientFn = Callable[[Params, TaskBatch], MetaGradient]


def task_mesh(
  devices: Sequence[jax.Device] | None = None,
  axis_name: str = 'tasks',
  *,
  num_tasks: int | None = None,
) -> Mesh:
  """A 1-D mesh named ``axis_name`` over ``devices`` (default: ``jax.devices()``).

  With ``num_tasks``, the mesh takes the first d devices, d the largest count that
  divides ``num_tasks``, so every device gets the same number of tasks and none is
  padded or dropped (a meta-batch of 12 on 8 devices uses 6 of them).
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError('task_mesh needs at least one device.')
  if num_tasks is not None:
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, (int, np.integer)):
      raise ValueError(f'num_tasks must be a positive int, got {num_tasks!r}.')
    if num_tasks < 1:
      raise ValueError(f'num_tasks must be a positive int, got {num_tasks}.')
    count = max(d for d in range(1, len(devices) + 1) if num_tasks % d == 0)
    devices = devices[:count]
  return Mesh(np.asarray(devices), (axis_name,))


def task_sharding(mesh: Mesh, axis_name: str = 'tasks') -> NamedSharding:
  """Leading (task) axis split over ``axis_name``, every other axis whole."""
  _axis_size(mesh, axis_name)
  return NamedSharding(mesh, PartitionSpec(axis_name))


def _axis_size(mesh: Mesh, axis_name: str) -> int:
  if axis_name not in mesh.shape:
    raise ValueError(
      f'the mesh has no axis {axis_name!r}; its axes are {tuple(mesh.axis_names)}. '
      'Pass the axis_name the mesh was built with.'
    )
  return mesh.shape[axis_name]


def _num_tasks(batch: Any) -> int:
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(batch)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(
      'every leaf of the task batch needs the same leading (task) axis; got '
      f'sizes {sorted(sizes, key=str)}.'
    )
  return sizes.pop()


def check_tasks_divide(batch: Any, mesh: Mesh, axis_name: str = 'tasks') -> int:
  """The number of tasks in ``batch``; raises ``ValueError`` unless it splits evenly.

  Reads shapes only, so under ``jit`` it runs once, at trace time.
  """
  tasks, devices = _num_tasks(batch), _axis_size(mesh, axis_name)
  if tasks % devices:
    raise ValueError(
      f'a meta-batch of {tasks} tasks does not split over the {devices} devices '
      f'of mesh axis {axis_name!r}. Choose a meta-batch size that is a multiple of '
      f'{devices} (e.g. {devices * max(1, -(-tasks // devices))}), or pad the batch '
      'explicitly; jmeta never drops or pads tasks itself, since either would '
      'change the mean meta-gradient.'
    )
  return tasks


def shard_task_batch(batch: Any, mesh: Mesh, axis_name: str = 'tasks') -> Any:
  """``batch`` placed with its leading task axis split over ``axis_name``."""
  check_tasks_divide(batch, mesh, axis_name)
  return jax.device_put(batch, task_sharding(mesh, axis_name))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """``tree`` (params, optimizer or train state) copied whole onto every device."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def sharded_meta_gradient(
  meta_gradient: MetaGradientFn, mesh: Mesh, axis_name: str = 'tasks'
) -> MetaGradientFn:
  """``meta_gradient`` with the task axis split over ``axis_name`` of ``mesh``.

  The N tasks are reshaped to (D, N/D), device d holding block d (the blocks of a
  ``shard_task_batch`` layout, so nothing moves), and ``meta_gradient`` is vmapped
  over the D blocks: XLA's SPMD partitioner runs one block per device, whatever
  the estimator's own batching strategy does within it, and all-reduces the mean
  of the D block means. Exact for any estimator whose ``meta_gradient`` is a mean
  over tasks, as every jmeta estimator's is.
  """
  devices = _axis_size(mesh, axis_name)
  tasks = task_sharding(mesh, axis_name)

  def sharded(params: Params, batch: TaskBatch) -> MetaGradient:
    n = check_tasks_divide(batch, mesh, axis_name)
    batch = jax.lax.with_sharding_constraint(batch, tasks)
    # Why not hand the sharded batch to meta_gradient directly: its 'map' or
    # 'chunked' strategy would lax.scan over the sharded axis, which the
    # partitioner can only run by gathering every task onto every device.
    blocks = jax.tree.map(
      lambda x: x.reshape(devices, n // devices, *x.shape[1:]), batch
    )
    blocks = jax.lax.with_sharding_constraint(blocks, tasks)
    per_block = jax.vmap(meta_gradient, in_axes=(None, 0))(params, blocks)
    # In its dtype: a carried integer (an inner optimizer's step count) stays one.
    return jax.tree.map(lambda x: jnp.mean(x, axis=0).astype(x.dtype), per_block)

  return sharded
