"""Gaussian-process regression tasks, the data of the neural-process papers.

A task is a function f ~ GP(0, k) observed with Gaussian noise, y = f(x) + eps,
eps ~ N(0, noise_std^2), with the RBF (squared-exponential) kernel

  k(x, x') = signal_std^2 exp(-1/2 sum_i (x_i - x'_i)^2 / length_scale_i^2)

and one independent GP per output dimension, as in DeepMind's neural-process
notebooks (``GPCurvesReader``; Garnelo et al., 2018; Kim et al., 2019). Inputs are
uniform in ``x_range`` ([-2, 2] there). The kernel is fixed (the CNP notebook:
length scale 0.4, signal std 1) or drawn per task (the ANP notebook: length scale
~ U[0.1, 0.6] per output and input dimension, signal std ~ U[0.1, 1.0] per
output dimension). The notebooks add 0.02^2 to the kernel's diagonal "for
stability"; here that term is the observation noise ``noise_std``, so the oracle
below includes it.

A task's targets are all of its points and its context the first ``num_context``
of them (the inputs are i.i.d., so a uniformly random subset), as in the notebooks'
training data: ``TaskBatch(context_x, context_y, target_x, target_y)``, the
context as the support set and the targets, context included, as the query set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jmeta.tasks.batch import TaskBatch, check_task_batch_shapes
from jmeta.validation import check_positive_int, check_positive_real
from jmeta.xla_workarounds import one_matrix_at_a_time

# Of (output_size, n, n) matrices, vmapped over tasks: batched, concurrent LAPACK
# calls can deadlock XLA:CPU, so each matrix gets its own (jmeta.xla_workarounds).
_cholesky = jax.vmap(one_matrix_at_a_time(jnp.linalg.cholesky))
_solve_lower = jax.vmap(
  one_matrix_at_a_time(lambda a, b: jax.scipy.linalg.solve_triangular(a, b, lower=True))
)


class RBFKernel(NamedTuple):
  """RBF kernel hyper-parameters; a leading task axis where they are per task.

  ``length_scale`` is ``(output_size, input_size)`` and ``signal_std``
  ``(output_size,)`` for one task (one GP per output dimension).
  """

  length_scale: jax.Array
  signal_std: jax.Array


class GPTasks(NamedTuple):
  """A GP task family (``gp_tasks``); every function is pure and keyed.

  Attributes:
    sample: ``sample(key, num_tasks, num_context, num_targets) -> TaskBatch``, the
      context ``(tasks, num_context, input_size)`` inside the targets ``(tasks,
      num_targets, input_size)``; the three ints are static (they are shapes).
    sample_kernels: ``sample_kernels(key, num_tasks) -> RBFKernel`` per task.
    tasks_from_kernels: ``(key, kernels, num_context, num_targets) -> TaskBatch``.
    sample_sizes: ``sample_sizes(key) -> (num_context, num_targets)``, Python ints
      drawn as the notebooks draw them (``gp_tasks``); it reads the key on the host.
  """

  sample: Callable[..., TaskBatch]
  sample_kernels: Callable[[jax.Array, int], RBFKernel]
  tasks_from_kernels: Callable[..., TaskBatch]
  sample_sizes: Callable[[jax.Array], tuple[int, int]]


def rbf_kernel(x1: jax.Array, x2: jax.Array, kernel: RBFKernel) -> jax.Array:
  """``K[d, i, j] = k_d(x1_i, x2_j)`` for one task: shape ``(output_size, n1, n2)``.

  ``x1`` is ``(n1, input_size)``, ``x2`` ``(n2, input_size)``; ``kernel`` holds one
  task's ``length_scale (output_size, input_size)`` and ``signal_std
  (output_size,)``.
  """
  scaled1 = x1[None] / kernel.length_scale[:, None, :]
  scaled2 = x2[None] / kernel.length_scale[:, None, :]
  sq = jnp.sum(jnp.square(scaled1[:, :, None, :] - scaled2[:, None, :, :]), axis=-1)
  return jnp.square(kernel.signal_std)[:, None, None] * jnp.exp(-0.5 * sq)


def noisy_covariance(x: jax.Array, kernel: RBFKernel, noise_std: float) -> jax.Array:
  """K(x, x) + noise_std^2 I: the covariance of noisy observations, ``(output_size, n,
  n)``.

  The noise term is also what keeps the Cholesky factor finite: an RBF kernel's
  eigenvalues decay like exp(-c k^2), so K alone is singular to float32 precision
  for a few dozen points, while K + s^2 I has eigenvalues >= s^2 (4e-4 at the
  notebooks' s = 0.02), a condition number below 4e5 for 400 points on [-2, 2],
  which float32's Cholesky factors accurately.
  """
  cov = rbf_kernel(x, x, kernel)
  return cov + noise_std**2 * jnp.eye(x.shape[0], dtype=cov.dtype)


def sample_gp(
  key: jax.Array, x: jax.Array, kernel: RBFKernel, noise_std: float
) -> jax.Array:
  """One draw y = f(x) + eps of one task's noisy GP at inputs ``x (n, input_size)``.

  y = L e with L L^T = K(x, x) + noise_std^2 I and e ~ N(0, I): shape ``(n,
  output_size)``. Traceable (``jit``, ``vmap``).
  """
  chol = _cholesky(noisy_covariance(x, kernel, noise_std))
  eps = jax.random.normal(key, chol.shape[:2], chol.dtype)
  return jnp.einsum('dij,dj->id', chol, eps)


def _range(value, name: str) -> tuple[float, float]:
  """(low, high) of a fixed value or a range, checked positive."""
  low, high = (value, value) if np.ndim(value) == 0 else tuple(value)
  check_positive_real(low, f'{name} (low)')
  check_positive_real(high, f'{name} (high)')
  if low > high:
    raise ValueError(f'{name} range must have low <= high, got {(low, high)}.')
  return float(low), float(high)


def check_context_sizes(num_context, num_targets) -> tuple[int, int]:
  """Both sizes as ints, refusing an empty context or one larger than the targets."""
  if isinstance(num_context, (int, np.integer)) and num_context == 0:
    raise ValueError(
      'num_context is 0: the context is empty. A neural process needs at least '
      'one context point to condition on; pass num_context >= 1.'
    )
  num_context = check_positive_int(num_context, 'num_context')
  num_targets = check_positive_int(num_targets, 'num_targets')
  if num_context > num_targets:
    raise ValueError(
      f'num_context={num_context} is larger than the task: its targets are all '
      f'{num_targets} of its points, the context included (the first '
      f'num_context). Pass num_context <= num_targets.'
    )
  return num_context, num_targets


def gp_tasks(
  input_size: int = 1,
  output_size: int = 1,
  *,
  length_scale: float | tuple[float, float] = 0.4,
  signal_std: float | tuple[float, float] = 1.0,
  noise_std: float = 0.02,
  x_range: tuple[float, float] = (-2.0, 2.0),
  context_sizes: tuple[int, int] = (3, 49),
  max_targets: int = 49,
  dtype=jnp.float32,
) -> GPTasks:
  """Regression tasks drawn from a GP with an RBF kernel (see the module docstring).

  ``length_scale`` and ``signal_std`` are a fixed value or a ``(low, high)`` range
  drawn uniformly per task (the CNP notebook: 0.4 and 1.0, fixed; the ANP
  notebook: (0.1, 0.6) and (0.1, 1.0)). ``sample_sizes`` draws ``num_context``
  uniformly in ``context_sizes`` (inclusive) and ``num_targets`` uniformly in
  ``[num_context, max_targets]``: the ANP notebook's draw with ``max_num_context
  = 50``. Each pair of sizes is one shape, so one compilation of a jitted step.
  """
  input_size = check_positive_int(input_size, 'input_size')
  output_size = check_positive_int(output_size, 'output_size')
  length_range = _range(length_scale, 'length_scale')
  signal_range = _range(signal_std, 'signal_std')
  noise_std = check_positive_real(noise_std, 'noise_std')
  low, high = x_range
  if not low < high:
    raise ValueError(f'x_range must have low < high, got {x_range}.')
  min_context, max_context = check_context_sizes(*context_sizes)
  check_context_sizes(max_context, max_targets)

  def sample_kernels(key: jax.Array, num_tasks: int) -> RBFKernel:
    kl, ks = jax.random.split(key)
    shape = (num_tasks, output_size)
    return RBFKernel(
      jax.random.uniform(kl, shape + (input_size,), dtype, *length_range),
      jax.random.uniform(ks, shape, dtype, *signal_range),
    )

  def tasks_from_kernels(
    key: jax.Array, kernels: RBFKernel, num_context: int, num_targets: int
  ) -> TaskBatch:
    num_context, num_targets = check_context_sizes(num_context, num_targets)
    num_tasks = kernels.signal_std.shape[0]
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (num_tasks, num_targets, input_size), dtype, low, high)
    keys = jax.random.split(ky, num_tasks)
    y = jax.vmap(lambda k, xs, kern: sample_gp(k, xs, kern, noise_std))(
      keys, x, kernels
    )
    return TaskBatch(x[:, :num_context], y[:, :num_context], x, y)

  def sample(
    key: jax.Array, num_tasks: int, num_context: int, num_targets: int
  ) -> TaskBatch:
    kk, kt = jax.random.split(key)
    kernels = sample_kernels(kk, num_tasks)
    return tasks_from_kernels(kt, kernels, num_context, num_targets)

  def sample_sizes(key: jax.Array) -> tuple[int, int]:
    kc, kt = jax.random.split(key)
    num_context = int(jax.random.randint(kc, (), min_context, max_context + 1))
    num_targets = int(jax.random.randint(kt, (), num_context, max_targets + 1))
    return num_context, num_targets

  return GPTasks(sample, sample_kernels, tasks_from_kernels, sample_sizes)


def gp_posterior(
  kernel: RBFKernel,
  context_x: jax.Array,
  context_y: jax.Array,
  target_x: jax.Array,
  noise_std: float,
) -> tuple[jax.Array, jax.Array]:
  """The exact GP predictive of noisy observations at ``target_x``, given the context.

  For one task and each output dimension d (Rasmussen & Williams, 2006, eq. 2.22-24):

    mean = K_tc (K_cc + s^2 I)^-1 y_c,
    cov = K_tt + s^2 I - K_tc (K_cc + s^2 I)^-1 K_ct,

  s = ``noise_std``. Returns ``mean (targets, output_size)`` and ``cov
  (output_size, targets, targets)``. Each target is a fresh noisy observation,
  even at a context input.
  """
  chol = _cholesky(noisy_covariance(context_x, kernel, noise_std))
  cross = rbf_kernel(context_x, target_x, kernel)  # (d, c, t)
  half = _solve_lower(chol, cross)
  white_y = _solve_lower(chol, context_y.T[..., None])
  mean = jnp.einsum('dct,dc->td', half, white_y[..., 0])
  cov = noisy_covariance(target_x, kernel, noise_std) - jnp.einsum(
    'dct,dcs->dts', half, half
  )
  return mean, cov


def _gp_task_log_likelihood(kernel, task, noise_std, joint):
  context_x, context_y, target_x, target_y = task
  mean, cov = gp_posterior(kernel, context_x, context_y, target_x, noise_std)
  resid = (target_y - mean).T  # (d, t)
  num_targets = target_y.shape[0]
  if joint:
    chol = _cholesky(cov)
    white = _solve_lower(chol, resid[..., None])
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)))
    total = -0.5 * (
      jnp.sum(jnp.square(white)) + log_det + resid.size * jnp.log(2 * jnp.pi)
    )
  else:
    var = jnp.diagonal(cov, axis1=-2, axis2=-1)  # (d, t)
    total = -0.5 * jnp.sum(jnp.square(resid) / var + jnp.log(2 * jnp.pi * var))
  return total / num_targets


def gp_log_likelihood(
  kernels: RBFKernel, batch: TaskBatch, *, noise_std: float, joint: bool = False
) -> jax.Array:
  """Per task, the exact GP log-likelihood of the query targets given the support
  set, per target point: shape ``(tasks,)``.

  ``joint=False``: (1/T) sum_t log N(y_t; mean_t, diag cov_tt), the best any
  predictive that factorises over the targets (a CNP's, ``predict``'s) can do in
  expectation; ``joint=True``: (1/T) log N(y_T; mean, cov) with the dense posterior
  covariance (``gp_posterior``), the bound for a latent NP's joint
  ``log_likelihood``. Both are exact only for targets beyond the context: a target
  that is a context point is its observation again, not a fresh one, so pass the
  targets after the first ``num_context`` (``batch.query_*[:, num_context:]``)
  for the strict bound. ``kernels`` are the tasks' own (``tasks_from_kernels``).
  Under float32 the dense covariance loses about 1e-7 of its scale to rounding;
  enable x64 for an oracle to many digits.
  """
  check_task_batch_shapes(batch)
  noise_std = check_positive_real(noise_std, 'noise_std')
  return jax.vmap(lambda k, t: _gp_task_log_likelihood(k, t, noise_std, joint))(
    kernels, tuple(batch)
  )
