"""Training and evaluation loop of the neural-process experiment.

One run trains one model (``config.model.name``: a CNP, NP or ANP, or MAML for the
sinusoid comparison) on one task family (``config.data.family``), sampling its
tasks on device inside the jitted update. It logs to ``metrics.jsonl`` and
TensorBoard, checkpoints so that a stopped run resumes exactly, and ends with the
evaluation on the family's fixed held-out tasks in ``results.json`` (with the exact
GP posterior's log-likelihood on the same tasks for a GP family), the curves of a
few tasks in ``predictions.json`` and their plot in ``predictions.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

import jmeta
from experiments import runs
from experiments.common import records
from experiments.common.checkpoint import Checkpointer
from experiments.common.progress import progress_bar
from experiments.common.run_info import logged_git_state, run_info
from experiments.common.workdir import JsonlWriter, prepare_workdir
from experiments.neural_processes import families, plot
from jmeta import neural_processes as nps
from jmeta.tasks.batch import Task

OUTPUTS = ('results.json', 'predictions.json', 'predictions.png')
PROCESSES = {
  'cnp': nps.conditional_neural_process,
  'np': nps.latent_neural_process,
  'anp': nps.attentive_neural_process,
}
MODELS = (*PROCESSES, 'maml')
# Changing these does not change the training trajectory, so a resumed run may
# differ in them from the run that wrote the checkpoints.
MAY_DIFFER_ON_RESUME = ('num_iterations', 'log_every', 'checkpoint_every', 'eval.')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the field for values the types cannot catch."""
  if config.model.name not in MODELS:
    raise ValueError(
      f'config.model.name = {config.model.name!r} is not one of {MODELS}.'
    )
  if config.data.family not in families.FAMILIES:
    raise ValueError(
      f'config.data.family = {config.data.family!r} is not one of {families.FAMILIES}.'
    )
  if config.model.name == 'maml' and config.data.family != 'sinusoid':
    raise ValueError(
      'config.model.name = maml is the sinusoid baseline; set config.data.family '
      f'to sinusoid (got {config.data.family!r}).'
    )
  for field in (
    'batch_size',
    'num_iterations',
    'log_every',
    'checkpoint_every',
    'extra_targets',
  ):
    if not isinstance(config[field], int) or config[field] < 1:
      raise ValueError(f'config.{field} must be a positive int, got {config[field]}.')
  if config.checkpoint_every % config.log_every:
    raise ValueError(
      f'config.checkpoint_every ({config.checkpoint_every}) must be a multiple of '
      f'config.log_every ({config.log_every}), so a checkpoint never falls inside '
      'a logging window.'
    )
  for name, sizes in (
    ('context_sizes', config.context_sizes),
    ('eval.context_sizes', config.eval.context_sizes),
  ):
    if not sizes or any(not isinstance(n, int) or n < 1 for n in sizes):
      raise ValueError(
        f'config.{name} must be a non-empty tuple of positive ints (an empty '
        f'context gives a neural process nothing to condition on), got {sizes}.'
      )
  ev = config.eval
  for field in ('num_targets', 'num_samples', 'tasks_per_call', 'plot_points'):
    if not isinstance(ev[field], int) or ev[field] < 1:
      raise ValueError(f'config.eval.{field} must be a positive int, got {ev[field]}.')
  if ev.num_tasks < 2 or ev.num_tasks % ev.tasks_per_call:
    raise ValueError(
      f'config.eval.num_tasks ({ev.num_tasks}) must be at least 2 (for a '
      f'confidence interval) and a multiple of config.eval.tasks_per_call '
      f'({ev.tasks_per_call}).'
    )
  if not 1 <= ev.plot_context <= max(ev.context_sizes):
    raise ValueError(
      f'config.eval.plot_context ({ev.plot_context}) must lie in 1..'
      f'{max(ev.context_sizes)} (the largest of config.eval.context_sizes).'
    )
  if ev.plot_tasks > ev.num_tasks:
    raise ValueError(
      f'config.eval.plot_tasks ({ev.plot_tasks}) exceeds config.eval.num_tasks.'
    )


def is_process(config) -> bool:
  return config.model.name in PROCESSES


def make_process(config) -> nps.NeuralProcess:
  fields = {k: v for k, v in config.model.items() if k != 'name'}
  return PROCESSES[config.model.name](**fields)


def make_learner(config, *, test: bool = False) -> tuple[jmeta.MetaLearner, object]:
  """The ``MetaLearner`` of ``config.model`` and its model (a ``NeuralProcess`` or
  MAML's MLP); ``test``: MAML adapting for ``config.model.test_steps``."""
  root = jax.random.key(config.seed)
  if is_process(config):
    process = make_process(config)
    learner = nps.neural_process_learner(
      process, key=jax.random.fold_in(root, 2), batching='vmap'
    )
    return learner, process
  m = config.model
  model = jmeta.mlp(tuple(m.hidden_sizes), 1)
  extra = {'test_steps': m.test_steps} if test else {}
  learner = jmeta.make_learner(
    'maml',
    model,
    jmeta.losses.mean_squared_error,
    inner_steps=m.inner_steps,
    inner_learning_rate=m.inner_learning_rate,
    batching='vmap',
    **extra,
  )
  return learner, model


def context_size(config, step: int) -> int:
  """The context size of update ``step``: uniform over ``config.context_sizes``, a
  function of the seed and the step only, so a resumed run draws the same."""
  rng = np.random.default_rng([config.seed, step])
  return int(config.context_sizes[rng.integers(len(config.context_sizes))])


def make_steps(config, trainer_update, family: families.Family) -> dict:
  """One jitted ``step(state, key) -> (state, metrics)`` per context size; each
  samples its batch of ``config.batch_size`` tasks inside the step."""
  include_context = is_process(config)
  steps = {}
  for n in sorted(set(config.context_sizes)):

    def sample(key, n=n):
      x, y, _ = family.sample(key, config.batch_size, n + config.extra_targets)
      return families.training_batch(x, y, n, include_context)

    steps[n] = jmeta.with_task_sampling(trainer_update, sample).step
  return steps


def evaluation_tasks(config, family: families.Family):
  """The family's held-out tasks: ``(x, y, info)`` with ``max(eval.context_sizes)``
  context candidates then ``eval.num_targets`` targets per task, and a checksum of
  ``y`` (equal for every run evaluated on the same tasks)."""
  pool = max(config.eval.context_sizes)
  x, y, info = jax.jit(family.sample, static_argnums=(1, 2))(
    jax.random.key(config.eval.seed),
    config.eval.num_tasks,
    pool + config.eval.num_targets,
  )
  checksum = hashlib.sha256(np.asarray(y).tobytes()).hexdigest()[:16]
  return x, y, info, checksum


def _chunks(tree, size: int):
  total = jax.tree.leaves(tree)[0].shape[0]
  for i in range(0, total, size):
    yield jax.tree.map(lambda a, i=i: a[i : i + size], tree)


def gp_oracle(config, batch: jmeta.TaskBatch, kernels) -> dict[str, np.ndarray]:
  """Per task, the exact GP posterior's log-likelihood of the targets per target
  point: ``marginal`` (each target's own Gaussian, the bound for a factorised
  predictive) and ``joint`` (the dense posterior, the bound for a latent NP's joint
  log-likelihood), by ``jmeta.neural_processes.gp_log_likelihood``."""
  noise = config.data.noise_std
  fn = jax.jit(
    lambda k, b: {
      'marginal': nps.gp_log_likelihood(k, b, noise_std=noise),
      'joint': nps.gp_log_likelihood(k, b, noise_std=noise, joint=True),
    }
  )
  parts = [
    jax.device_get(fn(k, b))
    for k, b in zip(
      _chunks(kernels, config.eval.tasks_per_call),
      _chunks(batch, config.eval.tasks_per_call),
    )
  ]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def make_scorer(config):
  """``score(params, batch, key) -> {metric: (tasks,)}`` for the run's model, one
  jitted call per ``eval.tasks_per_call`` tasks.

  A neural process: ``log_likelihood``, its own ``log_likelihood`` per target point
  (a CNP's factorised predictive, exact; a latent model's joint log p(y_T |
  context) by a log-mean-exp over ``eval.num_samples`` draws of z from q(z |
  context)); ``predict_log_likelihood`` and ``mse``, of ``predict``'s factorised
  predictive (z at the mean of q(z | context)) and its mean. MAML: ``mse`` of its
  prediction after ``model.test_steps`` SGD steps on the context.
  """
  learner, model = make_learner(config, test=True)
  if not is_process(config):

    def mse(outputs, targets):
      return {'mse': jmeta.losses.mean_squared_error(outputs, targets)}

    chunk = jax.jit(lambda p, b, k: jmeta.evaluate(learner, p, b, mse, batching='vmap'))
  else:
    samples = config.eval.num_samples

    def chunk_fn(params, batch, key):
      keys = jax.random.split(key, batch.num_tasks)
      ll = jax.vmap(lambda t, k: model.log_likelihood(params, Task(*t), k, samples))(
        tuple(batch), keys
      )
      pred = jmeta.evaluate(
        learner, params, batch, nps.predictive_metrics, batching='vmap'
      )
      return {
        'log_likelihood': ll,
        'predict_log_likelihood': pred['log_likelihood'],
        'mse': pred['mse'],
      }

    chunk = jax.jit(chunk_fn)

  def score(params, batch, key):
    parts = [
      jax.device_get(chunk(params, b, jax.random.fold_in(key, i)))
      for i, b in enumerate(_chunks(batch, config.eval.tasks_per_call))
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  return score


def summarise(values: np.ndarray) -> dict:
  mean, ci = jmeta.mean_confidence_interval(values)
  return {'mean': float(mean), 'ci95': float(ci)}


def evaluate(config, family: families.Family, params, tasks=None) -> dict:
  """Each metric (``make_scorer``) per context size of ``config.eval.context_sizes``
  on the held-out tasks, mean and 95% interval over tasks; for a GP family also
  ``gp_marginal`` and ``gp_joint`` (``gp_oracle``) on the same tasks. ``tasks``:
  ``evaluation_tasks``' output, if already drawn."""
  x, y, info, checksum = tasks or evaluation_tasks(config, family)
  pool = max(config.eval.context_sizes)
  score = make_scorer(config)
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 1)
  out = {
    'tasks': config.eval.num_tasks,
    'targets': config.eval.num_targets,
    'checksum': checksum,
    'context_sizes': list(config.eval.context_sizes),
    'metrics': {},
  }
  for n in config.eval.context_sizes:
    batch = families.evaluation_batch(x, y, n, pool)
    values = score(params, batch, jax.random.fold_in(key, n))
    if family.gp is not None:
      oracle = gp_oracle(config, batch, info)
      values.update({f'gp_{k}': v for k, v in oracle.items()})
    for name, v in values.items():
      out['metrics'].setdefault(name, []).append(summarise(v))
    logging.info(
      '%d context points: %s',
      n,
      ', '.join(f'{k} {np.mean(v):.3f}' for k, v in values.items()),
    )
  return out


def predictions(config, family: families.Family, params, tasks=None) -> dict:
  """The first ``eval.plot_tasks`` held-out tasks with ``eval.plot_context``
  context points: the model's predictive mean and std on a grid over the family's
  inputs (MAML: its adapted prediction, no std), the means of
  ``eval.plot_samples`` draws of z for a latent model, and the truth (the GP
  posterior's mean and std given the same context, or the sinusoid itself)."""
  x, y, info, _ = tasks or evaluation_tasks(config, family)
  n, count = config.eval.plot_context, config.eval.plot_tasks
  grid = jnp.linspace(*family.x_range, config.eval.plot_points)[:, None]
  learner, model = make_learner(config, test=True)
  key = jax.random.fold_in(jax.random.key(config.eval.seed), 2)
  predict = jax.jit(model.predict if is_process(config) else learner.predict)
  sample = jax.jit(
    lambda p, cx, cy, k: model.sample_predictive(
      p, cx, cy, grid, k, config.eval.plot_samples
    )
  )
  posterior = jax.jit(
    lambda kern, cx, cy: nps.gp_posterior(kern, cx, cy, grid, config.data.noise_std)
  )
  tasks = []
  for i in range(count):
    cx, cy = x[i, :n], y[i, :n]
    task = {
      'context_x': np.asarray(cx[:, 0]).tolist(),
      'context_y': np.asarray(cy[:, 0]).tolist(),
      'grid': np.asarray(grid[:, 0]).tolist(),
    }
    if is_process(config):
      pred = predict(params, cx, cy, grid)
      task['mean'] = np.asarray(pred.mean[:, 0]).tolist()
      task['std'] = np.asarray(pred.std[:, 0]).tolist()
      if model.latent:
        draws = sample(params, cx, cy, jax.random.fold_in(key, i))
        task['samples'] = np.asarray(draws.mean[..., 0]).tolist()
    else:
      task['mean'] = np.asarray(predict(params, cx, cy, grid)[:, 0]).tolist()
    if family.gp is not None:
      kernel = jax.tree.map(lambda a, i=i: a[i], info)
      mean, cov = posterior(kernel, cx, cy)
      task['truth_mean'] = np.asarray(mean[:, 0]).tolist()
      task['truth_std'] = np.sqrt(np.asarray(jnp.diagonal(cov[0]))).tolist()
    else:
      params_i = jax.tree.map(lambda a, i=i: a[i : i + 1], info)
      truth = jmeta.tasks.sinusoid_function(params_i, grid[None])[0]
      task['truth_mean'] = np.asarray(truth[:, 0]).tolist()
    tasks.append(task)
  return {'model': config.model.name, 'family': family.name, 'tasks': tasks}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.model`` on ``config.data.family``, resuming from ``workdir``'s
  checkpoints if any, then evaluates it; returns the results and the final state."""
  check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  with runs.workdir_lock(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  checkpointer = Checkpointer(
    workdir,
    config.to_dict(),
    may_differ=MAY_DIFFER_ON_RESUME,
  )
  family = families.make_family(config.data)
  learner, model = make_learner(config)
  root = jax.random.key(config.seed)
  params = model.init(jax.random.fold_in(root, 0), jnp.zeros((1, 1)))
  count = sum(int(np.size(p)) for p in jax.tree.leaves(params))
  trainer = jmeta.make_meta_trainer(learner, optax.adam(config.learning_rate))
  state = trainer.init(learner.init(params))
  state, saved = checkpointer.resume(state)
  start_step, total = int(state.step), config.num_iterations
  # The updates after the checkpoint are trained again: their records go.
  logged = records.cut_jsonl(workdir / 'metrics.jsonl', start_step)
  tb = records.tensorboard_writer(workdir / 'tensorboard', logged)
  seconds_before = saved.get('train_seconds', 0.0)
  steps = make_steps(config, trainer, family)
  train_key = jax.random.fold_in(root, 1)
  code = logged_git_state()

  start = time.perf_counter()
  window, window_steps = [], 0
  with (
    JsonlWriter(workdir / 'metrics.jsonl') as writer,
    progress_bar(
      range(start_step, total),
      initial=start_step,
      total=total,
      desc=f'{config.model.name} {config.data.family}',
      unit='update',
    ) as bar,
  ):
    for step in bar:
      n = context_size(config, step)
      state, metrics = steps[n](state, jax.random.fold_in(train_key, step))
      window.append(metrics)
      window_steps += 1
      done = step + 1
      if done % config.log_every == 0 or done == total:
        jmeta.raise_if_failed(state)
        window = jax.device_get(window)
        record = {
          f'train_{k}': float(np.mean([m[k] for m in window])) for k in window[0]
        }
        window, window_steps = [], 0
        elapsed = seconds_before + time.perf_counter() - start
        record.update(step=done, elapsed_s=round(elapsed, 2))
        writer.write(record)
        records.add_scalars(tb, record)
        bar.set_postfix(loss=f'{record["train_loss"]:.3f}')
      if done % config.checkpoint_every == 0 or done == total:
        seconds = seconds_before + time.perf_counter() - start
        checkpointer.save(done, state, {'step': done, 'train_seconds': seconds})
  checkpointer.close()
  tb.close()
  jax.block_until_ready(state)
  stretch = time.perf_counter() - start
  trained = int(state.step) - start_step

  eval_start = time.perf_counter()
  tasks = evaluation_tasks(config, family)
  evaluation = evaluate(config, family, state.params, tasks)
  curves = predictions(config, family, state.params, tasks)
  results = {
    # The commit this process started from, not the one checked out when it ends.
    'run': {**run_info(), **code},
    'config': config.to_dict(),
    'model': config.model.name,
    'family': config.data.family,
    'parameters': count,
    'iterations': int(state.step),
    'paper_iterations': config.paper_iterations,
    'resumed_from_update': start_step,
    # Compilation included (one per context size): the wall time of training.
    'train_seconds_total': round(seconds_before + stretch, 1),
    'seconds_per_update': (
      stretch / trained if trained else saved.get('seconds_per_update', math.nan)
    ),
    'eval_seconds': round(time.perf_counter() - eval_start, 1),
    'eval': evaluation,
    **code,
  }
  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  (workdir / 'predictions.json').write_text(json.dumps(curves))
  plot.plot_predictions([curves], workdir / 'predictions.png')
  logging.info('wrote results to %s', workdir)
  return {'state': state, **results}
