"""Issue 6's hint, measured: the first inner step batched over tasks, the rest mapped.

At the first inner step every task adapts from the same theta, so its forward and
backward passes can run as one batch of all tasks' support sets (``jax.vmap`` with
unbatched params: one large matmul per layer instead of one per task). The steps
after it have per-task params and run one task at a time (``lax.map``), as jmeta's
CPU default ``batching='map'`` runs all of them. The meta-gradient is assembled
from the pieces:

  (phi_1, state_1), vjp = jax.vjp(first step of every task, theta)
  v_i = d L_i(rest of task i's adaptation from phi_1_i) / d phi_1_i  (lax.map)
  grad = vjp(mean_i v_i)

which is the meta-gradient of ``jmeta.maml`` / ``jmeta.fomaml`` (the script checks
it against theirs, float tolerance). Under ``batching='vmap'`` the first step is
already batched this way, since vmap keeps unbatched params unbatched; this script
asks whether the hybrid beats ``'map'`` where ``'map'`` is the default.

  python benchmarks/shared_first_step.py --repeats 7  # writes results/<backend>_shared_first_step.*
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import harness

CELLS = (
  ('maml', '5w1s'),
  ('fomaml', '5w1s'),
  ('maml', '20w1s'),
  ('fomaml', '20w1s'),
)
WAYS = ('map', 'shared-first')


def shared_first_meta_gradient(model, loss_fn, steps, learning_rate, first_order):
  """``meta_gradient(params, batch)`` of (FO)MAML with the first step over all tasks."""
  import jax
  import jax.numpy as jnp
  import optax
  from jax import lax

  from jmeta.learner import MetaGradient
  from jmeta.tasks.batch import Task

  opt = optax.sgd(learning_rate)

  def support_loss(params, task):
    return loss_fn(model.apply(params, task.support_inputs), task.support_targets)

  def inner_step(phi, opt_state, task):
    value, grads = jax.value_and_grad(support_loss)(phi, task)
    if first_order:
      grads = lax.stop_gradient(grads)
    updates, opt_state = opt.update(grads, opt_state, phi)
    return optax.apply_updates(phi, updates), opt_state, value

  def first(params, task):
    phi, opt_state, value = inner_step(params, opt.init(params), task)
    return (phi, opt_state), value

  def rest(carry, task):
    def body(carry, _):
      phi, opt_state, _ = inner_step(*carry, task)
      return (phi, opt_state), None

    (phi, _), _ = lax.scan(body, carry, None, length=steps - 1)
    return loss_fn(model.apply(phi, task.query_inputs), task.query_targets)

  def meta_gradient(params, batch):
    tasks = Task(*batch)
    (carry, support), vjp = jax.vjp(
      lambda p: jax.vmap(first, in_axes=(None, 0))(p, tasks), params
    )

    def one(x):
      loss, ct = jax.value_and_grad(rest)(*x)
      return ct, loss

    cts, losses = lax.map(one, (carry, tasks))
    n = losses.shape[0]
    (grads,) = vjp((jax.tree.map(lambda x: x / n, cts), jnp.zeros_like(support)))
    return MetaGradient(grads, {'loss': losses.mean(), 'support_loss': support.mean()})

  return meta_gradient


def run_one(estimator: str, config: str, way: str, repeats: int) -> dict:
  import jax
  import jax.numpy as jnp
  import optax

  import jmeta

  cfg = harness.CONFIGS[config]
  batch = harness.random_task_batch(cfg['n_way'], cfg['k_shot'], cfg['meta_batch'])
  model = jmeta.conv4(cfg['n_way'], conv_impl='patches')
  params = model.init(jax.random.key(0), batch.support_inputs[0])
  reference = jmeta.make_learner(
    estimator,
    model,
    jmeta.losses.cross_entropy,
    inner_steps=cfg['inner_steps'],
    inner_learning_rate=harness.INNER_LEARNING_RATE,
    batching='map',
  )
  row = {'estimator': estimator, 'config': config, 'way': way}
  if way == 'shared-first':
    fn = shared_first_meta_gradient(
      model,
      jmeta.losses.cross_entropy,
      cfg['inner_steps'],
      harness.INNER_LEARNING_RATE,
      first_order=estimator == 'fomaml',
    )
    ours = jax.jit(fn)(params, batch).grads
    theirs = jax.jit(reference.meta_gradient)(params, batch).grads
    diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), ours, theirs)
    scale = jax.tree.map(lambda b: jnp.max(jnp.abs(b)), theirs)
    row['max_abs_diff'] = float(max(jax.tree.leaves(diff)))
    row['max_abs_grad'] = float(max(jax.tree.leaves(scale)))
    estimator_ = reference._replace(meta_gradient=fn)
  else:
    estimator_ = reference
  trainer = jmeta.make_meta_trainer(estimator_, optax.adam(1e-3))
  timing, _, _ = harness.time_step(trainer, trainer.init(params), batch, repeats)
  return {**row, **timing, 'tasks_per_s': cfg['meta_batch'] / timing['step_s']}


def markdown(report: dict) -> str:
  hw = report['hardware']
  lines = [
    f'# First inner step shared across tasks ({hw["backend"]})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; jax {hw["jax"]}',
    '- Conv4 (strided, `patches` convolutions), the episodes of `meta_step.py`, one '
    "device. *map*: `jmeta.maml`/`jmeta.fomaml` with `batching='map'`. "
    '*shared-first*: the first inner step vmapped over tasks with shared params, '
    'the remaining steps and the query loss mapped (see the script). Step: median '
    f'of {report["repeats"]} timed calls after one warm-up. The two run back to '
    'back per row, each in a fresh subprocess.',
    *(f'- {n}' for n in report['notes']),
    '',
    '| estimator | config | map step (s) | shared-first step (s) | shared-first / map '
    '| max abs grad difference (of max abs grad) |',
    '|---|---|---:|---:|---:|---|',
  ]
  for estimator, config in CELLS:
    rows = {
      r['way']: r
      for r in report['results']
      if (r['estimator'], r['config']) == (estimator, config)
    }
    if set(rows) != set(WAYS) or any('error' in r for r in rows.values()):
      errors = '; '.join(r['error'] for r in rows.values() if 'error' in r)
      lines.append(f'| {estimator} | {config} | failed: {errors or "not run"} | | | |')
      continue
    a, b = rows['map'], rows['shared-first']
    lines.append(
      f'| {estimator} | {config} | {a["step_s"]:.3f} | {b["step_s"]:.3f} | '
      f'{b["step_s"] / a["step_s"]:.2f} | {b["max_abs_diff"]:.1e} '
      f'({b["max_abs_grad"]:.1e}) |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--repeats', type=int, default=7)
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument('--single', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.single:
    print(json.dumps(run_one(*json.loads(args.single), args.repeats)), flush=True)
    return

  results = []
  for estimator, config in CELLS:
    for way in WAYS:
      cmd = [sys.executable, os.path.abspath(__file__), '--repeats', str(args.repeats)]
      cmd += ['--single', json.dumps([estimator, config, way])]
      cell = {'estimator': estimator, 'config': config, 'way': way}
      results.append(harness.run_json(cmd, cell))
      print(json.dumps(results[-1]), flush=True)
  report = {
    **harness.run_stamp(__file__),
    'repeats': args.repeats,
    'hardware': harness.hardware(),
    'notes': args.note,
    'results': results,
  }
  name = f'{report["hardware"]["backend"]}_shared_first_step'
  harness.save_report(args.out, name, report, markdown(report))


if __name__ == '__main__':
  main()
