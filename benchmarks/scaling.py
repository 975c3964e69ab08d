"""Throughput of the sharded meta-update over 1, 2, 4 and 8 devices.

Runs second-order MAML 5w1s (strided Conv4, meta-batch 32, one inner step, MAML's
Omniglot episode shapes as in ``meta_step.py``) with ``make_meta_trainer(...,
mesh=jmeta.task_mesh(devices[:d]))`` for each device count d, each in a fresh
subprocess. On a CPU-only machine the devices are host CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``: they share the machine's
cores.

  python benchmarks/scaling.py              # writes results/<backend>_scaling.{json,md,png}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import harness

DEVICE_COUNTS = (1, 2, 4, 8)


def run_one(devices: int, meta_batch: int, repeats: int) -> dict:
  import jax
  import optax

  import jmeta

  if len(jax.devices()) < devices:
    raise SystemExit(f'only {len(jax.devices())} devices, asked for {devices}')
  mesh = jmeta.task_mesh(jax.devices()[:devices])
  model = jmeta.conv4(5)
  batch = harness.random_task_batch(5, 1, meta_batch)
  estimator = jmeta.maml(
    model,
    jmeta.losses.cross_entropy,
    inner_steps=1,
    inner_learning_rate=harness.INNER_LEARNING_RATE,
  )
  trainer = jmeta.make_meta_trainer(estimator, optax.adam(1e-3), mesh=mesh)
  state = trainer.init(model.init(jax.random.key(0), batch.support_inputs[0]))
  batch = jmeta.shard_task_batch(batch, mesh)
  timing, state, metrics = harness.time_step(trainer, state, batch, repeats)
  return {
    'devices': devices,
    **timing,
    'tasks_per_s': meta_batch / timing['step_s'],
    **harness.device_fields(),
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--meta-batch', type=int, default=32)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument(
    '--render',
    metavar='JSON',
    help='rewrite the markdown next to this report from it, and run nothing',
  )
  p.add_argument('--single', type=int, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.render:
    with open(args.render) as f:
      report = json.load(f)
    with open(os.path.splitext(args.render)[0] + '.md', 'w') as f:
      f.write(markdown(report))
    return
  if args.single:
    print(json.dumps(run_one(args.single, args.meta_batch, args.repeats)), flush=True)
    return

  env = dict(os.environ)
  if 'cuda' not in env.get('JAX_PLATFORMS', '') and not _has_accelerator():
    env['XLA_FLAGS'] = (
      env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
    ).strip()
  rows = []
  for d in DEVICE_COUNTS:
    cmd = [sys.executable, os.path.abspath(__file__), '--single', str(d)]
    cmd += ['--meta-batch', str(args.meta_batch), '--repeats', str(args.repeats)]
    rows.append(harness.run_json(cmd, {'devices': d}, env=env))
    print(rows[-1], flush=True)
  ok = [r for r in rows if 'error' not in r]
  report = {
    **harness.run_stamp(__file__),
    'config': 'maml 5w1s, strided Conv4, 1 inner step, meta-batch '
    f'{args.meta_batch}, default batching and convolutions',
    'forced_host_devices': 'XLA_FLAGS' in env
    and 'force_host_platform' in env['XLA_FLAGS'],
    'notes': args.note,
    'rows': rows,
  }
  backend = ok[0]['backend'] if ok else 'unknown'
  stem = harness.save_report(args.out, f'{backend}_scaling', report, markdown(report))
  if ok:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.subplots()
    ax.plot([r['devices'] for r in ok], [r['tasks_per_s'] for r in ok], 'o-')
    ax.set(xlabel='devices', ylabel='tasks / s', xscale='log', xticks=DEVICE_COUNTS)
    ax.set_xticklabels([str(d) for d in DEVICE_COUNTS])
    title = f'MAML 5w1s, B={args.meta_batch} ({backend}'
    title += ', forced host devices)' if report['forced_host_devices'] else ')'
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(stem + '.png', dpi=100)
    print(f'wrote {stem}.png')


def markdown(report: dict) -> str:
  rows = report['rows']
  ok = [r for r in rows if 'error' not in r]
  backend = ok[0]['backend'] if ok else 'unknown'
  lines = [
    f'# Sharded meta-update throughput ({backend})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    f'- Config: {report["config"]}',
  ]
  if report['forced_host_devices'] and ok:
    lines.append(
      f'- Devices: host CPU devices forced with XLA_FLAGS on {ok[0]["cpu_count"]} '
      'cores; all 8 exist in every row, the mesh uses the first d, and they share '
      'the cores.'
    )
  lines += [f'- {note}' for note in report.get('notes', [])]
  lines += [
    '',
    '| devices | step (s) | tasks/s | compile (s) |',
    '|---:|---:|---:|---:|',
  ]
  for r in rows:
    if 'error' in r:
      lines.append(f'| {r["devices"]} | failed: {r["error"]} | | |')
    else:
      lines.append(
        f'| {r["devices"]} | {r["step_s"]:.3f} | {r["tasks_per_s"]:.1f} | '
        f'{r["compile_s"]:.1f} |'
      )
  return '\n'.join(lines) + '\n'


def _has_accelerator() -> bool:
  proc = subprocess.run(
    [sys.executable, '-c', 'import jax; print(jax.default_backend())'],
    capture_output=True,
    text=True,
  )
  return proc.stdout.strip().splitlines()[-1:] not in (['cpu'], [])


if __name__ == '__main__':
  main()
