"""learn2learn's MAML and ProtoNet on meta_step.py's episodes: the reference to beat.

Issue 6 sets jmeta's CPU target relative to learn2learn, so this script measures
learn2learn on the machine that measures jmeta, with the same shapes: MAML's
Omniglot Conv4 (``l2l.vision.models.OmniglotCNN``: stride-2 convolutions, batch
norm, features averaged over space), 28x28x1 float32 images, one query per class,
inner SGD at 2.0 (``l2l.algorithms.MAML``), Adam at 1e-3 outside. One meta-update
is what learn2learn's Omniglot example does: for each task, ``clone()``, ``adapt``
on the support loss for the inner steps, backward of the query loss (accumulated
over the meta-batch, divided by it), then ``optimizer.step()``.

ProtoNet (issue 18) is learn2learn's prototypical-network example
(``examples/vision/protonet_miniimagenet.py``) on Omniglot's 60-way 5-shot 5-query
training episode: ``l2l.vision.models.CNN4Backbone(64, channels=1)`` with max-pooling
(the paper's Conv4) or stride-2 convolutions (``--variants``) embeds the support and
query images in one batch, the prototypes are the support means, the logits the
negative squared distances, then cross-entropy, backward and an Adam step at 1e-3.

It needs torch and learn2learn, which jmeta does not depend on, so it runs in a
venv of its own (``benchmarks/README.md`` gives the install, with torch 2.13.0 and
two workarounds for learn2learn 0.2.0 on Python 3.11):

  /tmp/l2l/bin/python benchmarks/learn2learn_reference.py --repeats 5

Each (config, order) cell runs in a fresh subprocess, so its peak RSS is its own.
Writes ``cpu_learn2learn.json`` and ``cpu_learn2learn.md`` to ``--out`` (``--name``
renames them).

The speed of a shared machine drifts over minutes, so a comparison with jmeta is
fairest when both run at the same time. With ``--jmeta-python`` (an interpreter
with jmeta installed) every cell is followed by jmeta's meta-update on the same
episodes (``meta_step.py``'s cell with the CPU defaults, map + patches, on each of
``--jmeta-devices``; for ProtoNet, vmap + patches, as its configs train), and
``--rounds`` repeats the whole sequence; the speedup of a round divides times
measured a few seconds apart, and the report gives the median over rounds::

  /tmp/l2l/bin/python benchmarks/learn2learn_reference.py --repeats 5 --rounds 3 \
      --jmeta-python .venv/bin/python --jmeta-devices 1,2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time

import harness
import tables

# meta_step.py's episodes (harness imports no jax, nor does tables).
CONFIGS = {name: harness.CONFIGS[name] for name in ('5w1s', '20w1s', '60w5s5q')}
# The configs each estimator runs: MAML's episodes, and ProtoNet's training episode.
ESTIMATORS = {
  'maml': ('5w1s', '20w1s'),
  'fomaml': ('5w1s', '20w1s'),
  'protonet': ('60w5s5q',),
}
ORDERS = {'maml': False, 'fomaml': True}
# ProtoNet's Conv4 with max-pooling or stride-2 convolutions; MAML's is strided.
VARIANTS = ('maxpool', 'strided')


def cells(configs, estimators, variants) -> list[tuple[str, str, str]]:
  """The (config, estimator, variant) cells of a round, in run order."""
  return [
    (config, estimator, variant)
    for config in configs
    for estimator in estimators
    if config in ESTIMATORS[estimator]
    for variant in (variants if estimator == 'protonet' else ('strided',))
  ]


def protonet_step(variant: str):
  """learn2learn's ProtoNet update on one 60w5s5q episode, as a closure."""
  import learn2learn as l2l
  import numpy as np
  import torch

  cfg = CONFIGS['60w5s5q']
  n, k, q = cfg['n_way'], cfg['k_shot'], cfg['q_query']
  rng = np.random.default_rng(0)
  # Class-major: the k support then the q query images of each class, NCHW.
  images = torch.as_tensor(rng.standard_normal((n * (k + q), 1, 28, 28), np.float32))
  is_support = torch.arange(n * (k + q)) % (k + q) < k
  q_labels = torch.arange(n).repeat_interleave(q)
  torch.manual_seed(0)
  model = l2l.vision.models.CNN4Backbone(
    hidden_size=64, channels=1, max_pool=variant == 'maxpool'
  )
  opt = torch.optim.Adam(model.parameters(), 1e-3)

  def step() -> float:
    opt.zero_grad()
    embeddings = model(images)
    prototypes = embeddings[is_support].reshape(n, k, -1).mean(dim=1)
    query = embeddings[~is_support]
    logits = -((query[:, None, :] - prototypes[None, :, :]) ** 2).sum(dim=2)
    loss = torch.nn.functional.cross_entropy(logits, q_labels)
    loss.backward()
    opt.step()
    return float(loss)

  return step


def maml_step(config: str, estimator: str):
  """learn2learn's MAML meta-update on ``config``'s episodes, as a closure."""
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
    model, lr=harness.INNER_LEARNING_RATE, first_order=ORDERS[estimator]
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

  return step


def run_cell(config: str, estimator: str, variant: str, repeats: int) -> dict:
  import learn2learn as l2l
  import torch

  if estimator == 'protonet':
    step = protonet_step(variant)
  else:
    step = maml_step(config, estimator)
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
    'tasks_per_s': CONFIGS[config]['meta_batch'] / statistics.median(times),
    'loss': loss,
    'peak_rss_mib': harness.peak_rss_mib(),
    'torch_threads': torch.get_num_threads(),
    'torch': torch.__version__,
    'learn2learn': l2l.__version__,
  }


def jmeta_cell(estimator: str, config: str, variant: str, devices: int) -> dict:
  """``meta_step.py``'s cell for jmeta's CPU defaults on ``devices`` devices (for
  ProtoNet, the vmap batching its configs train with)."""
  return {
    'estimator': estimator,
    'config': config,
    'variant': variant,
    'batching': 'vmap' if estimator == 'protonet' else 'map',
    'conv_impl': 'patches',
    'devices': devices,
  }


def markdown(report: dict) -> str:
  rows = [
    '# learn2learn reference (cpu)',
    '',
    f'- Date: {report["date"]}',
    f'- Hardware: {report["hardware"]["cpu_model"]}, '
    f'{report["hardware"]["cpu_count"]} CPUs as seen by `os.cpu_count()`',
    f'- Software: torch {report["versions"]["torch"]}, learn2learn '
    f'{report["versions"]["learn2learn"]}, Python {report["hardware"]["python"]}',
    f'- Command: `{report["command"]}`'
    + (f' at commit {report["commit"]}' if report.get('commit') else ''),
    '',
    'One meta-update of `l2l.algorithms.MAML` on `l2l.vision.models.OmniglotCNN`, '
    'the episodes of `meta_step.py` (random 28x28x1 images, one query per class), '
    "inner SGD at 2.0, Adam at 1e-3; tasks in a Python loop as in learn2learn's "
    "Omniglot example. ProtoNet: learn2learn's prototypical-network example with "
    '`l2l.vision.models.CNN4Backbone` (max-pool or strided Conv4) on one 60-way 5-shot '
    '5-query episode, Adam at 1e-3. *step* is the median of the timed calls after one '
    'warm-up; '
    '*peak RSS* is `ru_maxrss` of the fresh subprocess that ran the cell.'
    + (
      f' The whole sequence ran {report["rounds"]} times (rounds).'
      if report.get('rounds', 1) > 1
      else ''
    ),
    '',
    '| estimator | config | variant | first step (s) | step (s) | tasks/s | peak RSS '
    '(MiB) |',
    '|---|---|---|---:|---:|---:|---:|',
  ]
  rounds = report.get('rounds', 1)
  if rounds > 1:
    # One row per cell and round, in run order.
    rows[-2] = rows[-2].replace('| estimator |', '| round | estimator |')
    rows[-1] = '|---' + rows[-1]
  for r in report['results']:
    if r.get('impl') == 'jmeta':
      continue
    head = f'| {r["round"]} ' if rounds > 1 else ''
    if 'error' in r:
      rows.append(
        f'{head}| {r["estimator"]} | {r["config"]} | {tables.variant_of(r)} | '
        f'failed: {r["error"]} | | | |'
      )
      continue
    rows.append(
      f'{head}| {r["estimator"]} | {r["config"]} | {tables.variant_of(r)} | '
      f'{r["first_step_s"]:.2f} | '
      f'{r["step_s"]:.3f} | {r["tasks_per_s"]:.1f} | {r["peak_rss_mib"]:.0f} |'
    )
  table = tables.comparison(report)
  if any(row['jmeta'] for row in table):
    rows += [
      '',
      '## Against jmeta, interleaved',
      '',
      "jmeta's meta-update (`meta_step.py`'s cell: map + patches, the CPU defaults; "
      'vmap + patches for ProtoNet, as its configs train) ran right after each '
      'learn2learn cell, in every round. Times are medians over '
      "rounds; the speedup is the median over rounds of learn2learn's time over "
      "jmeta's in the same round, with its range.",
      '',
      '| estimator | config | variant | learn2learn (s) | jmeta devices | jmeta (s) '
      '| speedup | range | learn2learn RSS (MiB) | jmeta RSS (MiB) |',
      '|---|---|---|---:|---:|---:|---:|---|---:|---:|',
    ]
    for row in table:
      for d, ours in row['jmeta'].items():
        lo, hi = row['speedup_range'][d]
        rows.append(
          f'| {row["estimator"]} | {row["config"]} | {row["variant"]} | '
          f'{row["learn2learn_s"]:.3f} | '
          f'{d} | {ours["step_s"]:.3f} | {row["speedup"][d]:.2f}x | '
          f'{lo:.2f}–{hi:.2f}x | {row["learn2learn_rss_mib"]:.0f} | '
          f'{ours["peak_rss_mib"]:.0f} |'
        )
    errors = [r for r in report['results'] if r.get('impl') == 'jmeta' and 'error' in r]
    for r in errors:
      rows.append(f'- jmeta {r["estimator"]} {r["config"]} failed: {r["error"]}')
  return '\n'.join(rows) + '\n'


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--configs', default=','.join(CONFIGS))
  p.add_argument('--estimators', default=','.join(ESTIMATORS))
  p.add_argument(
    '--variants', default=','.join(VARIANTS), help="ProtoNet's Conv4s, e.g. maxpool"
  )
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--timeout', type=float, default=900)
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument(
    '--name', default='cpu_learn2learn', help='writes <out>/<name>.json and .md'
  )
  p.add_argument('--rounds', type=int, default=1, help='repeat every cell, in turn')
  p.add_argument(
    '--jmeta-python',
    help="an interpreter with jmeta installed: time jmeta's meta-update after each "
    'learn2learn cell (see the module docstring)',
  )
  p.add_argument('--jmeta-devices', default='1', help='e.g. 1,2')
  p.add_argument('--single', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.single:
    config, estimator, variant = args.single.split(':')
    print(json.dumps(run_cell(config, estimator, variant, args.repeats)))
    return
  configs = [c for c in args.configs.split(',') if c]
  estimators = [e for e in args.estimators.split(',') if e]
  variants = [v for v in args.variants.split(',') if v]
  bad = (
    [c for c in configs if c not in CONFIGS]
    + [e for e in estimators if e not in ESTIMATORS]
    + [v for v in variants if v not in VARIANTS]
  )
  if bad:
    p.error(
      f'unknown {bad}; configs are {list(CONFIGS)}, estimators {list(ESTIMATORS)}, '
      f'variants {list(VARIANTS)}'
    )
  if not cells(configs, estimators, variants):
    p.error(f'no cell: each estimator runs only its own configs, {ESTIMATORS}')
  devices = [int(d) for d in args.jmeta_devices.split(',') if d]
  here = os.path.dirname(os.path.abspath(__file__))
  results, versions = [], {}
  start = time.perf_counter()

  def run(cmd, cell):
    results.append(harness.run_json(cmd, cell, args.timeout))
    if 'error' in results[-1]:
      return None
    print(json.dumps(results[-1]), flush=True)
    return results[-1]

  for round_ in range(args.rounds):
    for config, estimator, variant in cells(configs, estimators, variants):
      cmd = [sys.executable, os.path.abspath(__file__), '--single']
      cmd += [f'{config}:{estimator}:{variant}', '--repeats', str(args.repeats)]
      cell = {'impl': 'learn2learn', 'estimator': estimator, 'config': config}
      out = run(cmd, {**cell, 'variant': variant, 'round': round_})
      if out is not None:
        versions = {'torch': out.pop('torch'), 'learn2learn': out.pop('learn2learn')}
      for d in devices if args.jmeta_python else ():
        if CONFIGS[config]['meta_batch'] % d:
          continue  # its tasks do not split over d devices
        mine = jmeta_cell(estimator, config, variant, d)
        cmd = [args.jmeta_python, os.path.join(here, 'meta_step.py'), '--single']
        cmd += [json.dumps(mine), '--repeats', str(args.repeats)]
        run(cmd, {'impl': 'jmeta', **mine, 'round': round_})
  report = {
    'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
    'command': shlex.join(
      ['python', 'benchmarks/learn2learn_reference.py', *sys.argv[1:]]
    ),
    'commit': harness.run_stamp(__file__)['commit'],
    'total_s': time.perf_counter() - start,
    'hardware': {
      'cpu_model': harness.cpu_model(),
      'cpu_count': os.cpu_count(),
      'python': platform.python_version(),
      'platform': platform.platform(),
    },
    'versions': versions,
    'rounds': args.rounds,
    'results': results,
  }
  harness.save_report(args.out, args.name, report, markdown(report))


if __name__ == '__main__':
  main()
