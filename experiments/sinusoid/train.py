"""Training and evaluation loop for the sinusoid experiment."""

from __future__ import annotations

import functools
import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging

import jmeta
from experiments.common.run_info import hardware_label, logged_git_state, run_info
from experiments.common.workdir import JsonlWriter, prepare_workdir

OUTPUTS = (
  'config.json',
  'metrics.jsonl',
  'results.json',
  'results.md',
  'adaptation.png',
)

# Finn et al. (2017), Appendix, 5-shot sinusoid: MSE after 1 / 5 / 10 steps.
PAPER_MSE_5SHOT = {
  'maml': {1: 0.67, 5: 0.38, 10: 0.35},
  'pretrain': {1: 2.41, 5: 2.23, 10: 2.19},
}
# Table labels; any other learner of jmeta.LEARNERS is labelled by its name.
LABELS = {
  'maml': 'MAML (second order)',
  'fomaml': 'first-order MAML',
  'reptile': 'Reptile',
  'pretrain': 'pretrained (joint training)',
}


def label(algorithm: str) -> str:
  return LABELS.get(algorithm, algorithm)


def _check_config(config: ml_collections.ConfigDict) -> None:
  # Every gradient-based learner fits regression; each is built from its block.
  unknown = [a for a in config.algorithms if a not in jmeta.LEARNERS]
  if unknown:
    raise ValueError(
      f'config.algorithms has unknown entries {unknown}; choose from '
      f'{sorted(jmeta.LEARNERS)}.'
    )
  missing = [a for a in config.algorithms if a not in config]
  if missing:
    raise ValueError(
      f'config has no settings block for {missing}; add e.g. '
      f'config.{missing[0]} = ml_collections.ConfigDict(...).'
    )
  bad = [s for s in config.eval.report_steps if not 0 <= s <= config.eval.steps]
  if bad:
    raise ValueError(
      f'config.eval.report_steps {bad} lie outside 0..config.eval.steps '
      f'({config.eval.steps}).'
    )


def make_learner(
  config, algorithm: str, model: jmeta.Model, test_steps: int | None = None
) -> jmeta.MetaLearner:
  """The learner of ``config.<algorithm>``, adapting for ``test_steps`` at test."""
  extra = {} if test_steps is None else {'test_steps': test_steps}
  return jmeta.make_learner(
    algorithm,
    model,
    jmeta.losses.mean_squared_error,
    batching=config.batching,
    **config[algorithm].to_dict(),
    **extra,
  )


def train_algorithm(
  config, algorithm: str, model: jmeta.Model, tasks, init_params, writer: JsonlWriter
):
  """Meta-trains one algorithm; returns its meta-params and the wall-clock seconds."""
  estimator = make_learner(config, algorithm, model)
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(estimator, optax.adam(config.outer_learning_rate)),
    lambda key: tasks.sample(key, config.meta_batch_size),
  )
  state = trainer.init(estimator.init(init_params))
  train_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  start = time.perf_counter()
  with tqdm.trange(config.num_iterations, desc=algorithm, disable=None) as bar:
    for step in bar:
      state, metrics = trainer.step(state, jax.random.fold_in(train_key, step))
      if (step + 1) % config.log_every == 0 or step + 1 == config.num_iterations:
        jmeta.raise_if_failed(state)
        record = {k: float(v) for k, v in metrics.items()}
        record.update(
          algorithm=algorithm,
          step=step + 1,
          elapsed_s=round(time.perf_counter() - start, 3),
        )
        writer.write(record)
        bar.set_postfix(loss=f'{record["loss"]:.3f}')
        logging.info(
          '%s step %d: query loss %.4f, support loss %.4f',
          algorithm,
          step + 1,
          record['loss'],
          record['support_loss'],
        )
  jax.block_until_ready(state)
  return state.params, time.perf_counter() - start


def _mse(outputs, targets):
  return {'mse': jmeta.losses.mean_squared_error(outputs, targets)}


def evaluate(
  config, algorithm: str, model: jmeta.Model, params, batch: jmeta.TaskBatch
) -> np.ndarray:
  """Query MSE after 0..config.eval.steps steps of the learner's own test-time
  adaptation, per task: ``(tasks, steps+1)``."""
  curves = []
  for steps in range(config.eval.steps + 1):
    learner = make_learner(config, algorithm, model, test_steps=steps)
    mse = jax.jit(
      functools.partial(
        jmeta.evaluate, learner, metrics_fn=_mse, batching=config.batching
      )
    )
    curves.append(np.asarray(mse(params, batch)['mse']))
  return np.stack(curves, axis=1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every algorithm of ``config`` and writes metrics, results and plots."""
  _check_config(config)
  workdir = prepare_workdir(workdir, OUTPUTS)
  info = {**run_info(), **logged_git_state()}
  (workdir / 'config.json').write_text(config.to_json(indent=2))

  model = jmeta.mlp(config.hidden_sizes, 1)
  tasks = jmeta.sinusoid_tasks(config.num_support, config.num_query)
  init_params = model.init(
    jax.random.fold_in(jax.random.key(config.seed), 0), jnp.zeros((1, 1))
  )
  eval_tasks = jmeta.sinusoid_tasks(config.num_support, config.eval.num_query)
  eval_key = jax.random.key(config.eval.seed)
  eval_params = eval_tasks.sample_params(eval_key, config.eval.num_tasks)
  eval_batch = eval_tasks.tasks_from_params(
    jax.random.fold_in(eval_key, 1), eval_params
  )
  jmeta.validate_task_batch(eval_batch)

  results = {'run': info, 'config': config.to_dict(), 'algorithms': {}}
  trained = {}
  with JsonlWriter(workdir / 'metrics.jsonl') as writer:
    for algorithm in config.algorithms:
      params, seconds = train_algorithm(
        config, algorithm, model, tasks, init_params, writer
      )
      trained[algorithm] = params
      curves = evaluate(config, algorithm, model, params, eval_batch)
      mean, ci = jmeta.mean_confidence_interval(curves)
      results['algorithms'][algorithm] = {
        'train_seconds': round(seconds, 1),
        'iterations': config.num_iterations,
        'mse_mean': mean.tolist(),
        'mse_ci95': ci.tolist(),
      }
      logging.info(
        '%s: MSE after %s steps = %s (trained %.0f s)',
        algorithm,
        list(config.eval.report_steps),
        [f'{mean[s]:.3f}+-{ci[s]:.3f}' for s in config.eval.report_steps],
        seconds,
      )

  (workdir / 'results.json').write_text(json.dumps(results, indent=2))
  (workdir / 'results.md').write_text(results_table(results))
  plot(
    config, model, trained, results, eval_batch, eval_params, workdir / 'adaptation.png'
  )
  logging.info('wrote results to %s', workdir)
  return results


def results_table(results: dict) -> str:
  """A markdown table of the measured MSEs beside the paper's."""
  config, run = results['config'], results['run']
  steps = config['eval']['report_steps']
  head = (
    '| algorithm | '
    + ' | '.join(f'MSE after {s}' for s in steps)
    + ' | paper (1 / 5 / 10) | iterations | train time |'
  )
  lines = [head, '|' + ' --- |' * (len(steps) + 4)]
  for name, r in results['algorithms'].items():
    cells = [f'{r["mse_mean"][s]:.3f} ± {r["mse_ci95"][s]:.3f}' for s in steps]
    paper = PAPER_MSE_5SHOT.get(name)
    paper_cell = ' / '.join(f'{paper[s]:.2f}' for s in (1, 5, 10)) if paper else '–'
    lines.append(
      f'| {label(name)} | '
      + ' | '.join(cells)
      + f' | {paper_cell} | {r["iterations"]:,} | {r["train_seconds"]:.0f} s |'
    )
  lines.append('')
  lines.append(
    f'{config["num_support"]}-shot, {config["eval"]["num_tasks"]} held-out tasks, '
    f'{config["eval"]["num_query"]} query points each, each learner adapting at '
    'test as it does in training (the pretrained baseline: SGD at '
    f'{config["pretrain"]["test_learning_rate"]}); ± is a 95% confidence '
    f'interval. Hardware: {hardware_label(run)}. Command: `{run["command"]}`.'
  )
  return '\n'.join(lines) + '\n'


def plot(config, model, trained, results, eval_batch, eval_params, path) -> None:
  """Adaptation curves (MSE vs steps) and a few fitted tasks."""
  # A Figure without pyplot: no global backend switch in the caller's process (a
  # notebook keeps its inline plots).
  from matplotlib.figure import Figure

  n_tasks = config.eval.plot_tasks
  fig = Figure(figsize=(4.2 * (1 + n_tasks), 3.6))
  axes = fig.subplots(1, 1 + n_tasks)
  steps = np.arange(config.eval.steps + 1)
  for name, r in results['algorithms'].items():
    mean, ci = np.array(r['mse_mean']), np.array(r['mse_ci95'])
    axes[0].plot(steps, mean, marker='o', ms=3, label=label(name))
    axes[0].fill_between(steps, mean - ci, mean + ci, alpha=0.2)
  axes[0].set(
    xlabel='inner SGD steps at test',
    ylabel='query MSE',
    yscale='log',
    title='adaptation on held-out tasks',
  )
  axes[0].legend(fontsize=7)

  grid = jnp.linspace(-5, 5, 200)[:, None]
  for i, ax in enumerate(axes[1:]):
    task_params = jmeta.tasks.SinusoidParams(
      eval_params.amplitude[i : i + 1], eval_params.phase[i : i + 1]
    )
    truth = jmeta.tasks.sinusoid_function(task_params, grid[None])[0]
    ax.plot(grid[:, 0], truth[:, 0], 'k', lw=2, label='ground truth')
    xs, ys = eval_batch.support_inputs[i], eval_batch.support_targets[i]
    for name, params in trained.items():
      learner = make_learner(config, name, model, test_steps=config.eval.steps)
      ax.plot(
        grid[:, 0],
        learner.predict(params, xs, ys, grid)[:, 0],
        lw=1,
        label=f'{label(name)}, {config.eval.steps} steps',
      )
    ax.plot(xs[:, 0], ys[:, 0], 'r^', ms=7, label=f'{len(xs)} support points')
    ax.set(title=f'task {i}', xlabel='x')
  axes[1].legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
