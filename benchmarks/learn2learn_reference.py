"""learn2learn's MAML on the same episodes as ``meta_step.py``: the reference to beat.

Issue 6 sets jmeta's CPU target relative to learn2learn, so this script measures
learn2learn on the machine that measures jmeta, with the same shapes: MAML's
Omniglot Conv4 (``l2l.vision.models.OmniglotCNN``: stride-2 convolutions, batch
norm, features averaged over space), 28x28x1 float32 images, one query per class,
inner SGD at 2.0 (``l2l.algorithms.MAML``), Adam at 1e-3 outside. One meta-update
is what learn2learn's Omniglot example does: for each task, ``clone()``, ``adapt``
on the support loss for the inner steps, backward of the query loss (accumulated
over the meta-batch, divided by it), then ``optimizer.step()``.

It needs torch and learn2learn, which jmeta does not depend on, so it runs in a
venv of its own (see ``benchmarks/README.md``):

  python -m venv /tmp/l2l && /tmp/l2l/bin/pip install torch==2.13.0 learn2learn==0.2.0
  /tmp/l2l/bin/python benchmarks/learn2learn_reference.py --repeats 5

Each (config, order) cell runs in a fresh subprocess, so its peak RSS is its own.
Writes ``cpu_learn2learn.json`` and ``cpu_learn2learn.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

# The same episodes as meta_step.py's CONFIGS (kept in sync by hand: this script
# must not import jax).
CONFIGS = {
  '5w1s': {'n_way': 5, 'k_shot': 1, 'meta_batch': 32, 'inner_steps': 1},
  '20w1s': {'n_way': 20, 'k_shot': 1, 'meta_batch': 16, 'inner_steps': 5},
}
ORDERS = {'maml': False, 'fomaml': True}
INNER_LEARNING_RATE = 2.0


def run_cell(config: str, estimator: str, repeats: int) -> dict:
  import learn2learn as l2l
  import numpy as np
  import torch

  cfg = CONFIGS[config]
  n, k, b = cfg['n_way'], cfg['k_shot'], cfg['meta_batch']
  rng = np.random.default_rng(0)
  # NCHW, as torch convolutions take them.
  support = torch.as_tensor(rng.standard_normal((b, n * k, 1, 28, 28), np.float32))
  query = torch.as_tensor(rng.standard_normal((b, n, 1, 28, 28), np.float32))
  s_labels = torch.arange(n).repeat(k)
  q_labels = torch.arange(n)
  torch.manual_seed(0)
  model = l2l.vision.models.OmniglotCNN(n)
  maml = l2l.algorithms.MAML(
    model, lr=INNER_LEARNING_RATE, first_order=ORDERS[estimator]
  )
  opt = torch.optim.Adam(maml.parameters(), 1e-3)
  loss_fn = torch.nn.CrossEntropyLoss()

  def step() -> float:
    opt.zero_grad()
    total = 0.0
    for i in range(b):
      learner = maml.clone()
      for _ in range(cfg['inner_steps']):
        learner.adapt(loss_fn(learner(support[i]), s_labels))
      loss = loss_fn(learner(query[i]), q_labels) / b
      loss.backward()
      total += float(loss)
    opt.step()
    return total

  start = time.perf_counter()
  step()
  first_s = time.perf_counter() - start
  step()  # warm-up, as meta_step.py does after compiling
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - start)
  return {
    'first_step_s': first_s,
    'step_s': statistics.median(times),
    'step_times_s': times,
    'tasks_per_s': b / statistics.median(times),
    'loss': loss,
    'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'torch_threads': torch.get_num_threads(),
    'torch': torch.__version__,
    'learn2learn': l2l.__version__,
  }


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def markdown(report: dict) -> str:
  rows = [
    '# learn2learn reference (cpu)',
    '',
    f'- Date: {report["date"]}',
    f'- Hardware: {report["hardware"]["cpu_model"]}, '
    f'{report["hardware"]["cpu_count"]} CPUs as seen by `os.cpu_count()`',
    f'- Software: torch {report["versions"]["torch"]}, learn2learn '
    f'{report["versions"]["learn2learn"]}, Python {report["hardware"]["python"]}',
    f'- Command: `{report["command"]}`',
    '',
    'One meta-update of `l2l.algorithms.MAML` on `l2l.vision.models.OmniglotCNN`, '
    'the episodes of `meta_step.py` (random 28x28x1 images, one query per class), '
    "inner SGD at 2.0, Adam at 1e-3; tasks in a Python loop as in learn2learn's "
    'Omniglot example. *step* is the median of the timed calls after one warm-up; '
    '*peak RSS* is `ru_maxrss` of the fresh subprocess that ran the cell.',
    '',
    '| estimator | config | first step (s) | step (s) | tasks/s | peak RSS (MiB) |',
    '|---|---|---:|---:|---:|---:|',
  ]
  for r in report['results']:
    if 'error' in r:
      rows.append(f'| {r["estimator"]} | {r["config"]} | failed: {r["error"]} | | | |')
      continue
    rows.append(
      f'| {r["estimator"]} | {r["config"]} | {r["first_step_s"]:.2f} | '
      f'{r["step_s"]:.3f} | {r["tasks_per_s"]:.1f} | {r["peak_rss_mib"]:.0f} |'
    )
  return '\n'.join(rows) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--configs', default=','.join(CONFIGS))
  p.add_argument('--estimators', default=','.join(ORDERS))
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--timeout', type=float, default=900)
  p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results'))
  p.add_argument('--single', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.single:
    config, estimator = args.single.split(':')
    print(json.dumps(run_cell(config, estimator, args.repeats)))
    return
  configs = [c for c in args.configs.split(',') if c]
  estimators = [e for e in args.estimators.split(',') if e]
  bad = [c for c in configs if c not in CONFIGS] + [
    e for e in estimators if e not in ORDERS
  ]
  if bad:
    p.error(f'unknown {bad}; configs are {list(CONFIGS)}, estimators {list(ORDERS)}')
  results, versions = [], {}
  start = time.perf_counter()
  for config in configs:
    for estimator in estimators:
      cmd = [
        sys.executable,
        os.path.abspath(__file__),
        '--single',
        f'{config}:{estimator}',
      ]
      cmd += ['--repeats', str(args.repeats)]
      cell = {'estimator': estimator, 'config': config}
      try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
      except subprocess.TimeoutExpired:
        results.append({**cell, 'error': f'timed out after {args.timeout:.0f}s'})
        continue
      lines = proc.stdout.strip().splitlines()
      if proc.returncode or not lines:
        results.append(
          {**cell, 'error': (proc.stderr.strip().splitlines() or ['?'])[-1]}
        )
        continue
      out = json.loads(lines[-1])
      versions = {'torch': out.pop('torch'), 'learn2learn': out.pop('learn2learn')}
      results.append({**cell, **out})
      print(json.dumps(results[-1]), flush=True)
  report = {
    'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    'command': shlex.join(
      ['python', 'benchmarks/learn2learn_reference.py', *sys.argv[1:]]
    ),
    'total_s': time.perf_counter() - start,
    'hardware': {
      'cpu_model': cpu_model(),
      'cpu_count': os.cpu_count(),
      'python': platform.python_version(),
      'platform': platform.platform(),
    },
    'versions': versions,
    'results': results,
  }
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'cpu_learn2learn.json'), 'w') as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(args.out, 'cpu_learn2learn.md'), 'w') as f:
    f.write(markdown(report))


if __name__ == '__main__':
  main()
