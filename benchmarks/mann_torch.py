"""MANN training updates: jmeta against a straightforward PyTorch MANN (issue 19).

Both train Santoro et al.'s Omniglot MANN on the same shapes: ``--batch`` episodes
of 50 steps (5 classes x 10 instances), each step a 20x20 image with the previous
step's one-hot label (405 features), an LSTM controller of 200 units, a 128 x 40
LRUA memory with 4 heads (usage decay 0.95), cross-entropy on every step and one
Adam step at 1e-3. jmeta's update is its experiment's (``jmeta.memory.mann``: one
``lax.scan`` over the episode, ``vmap`` over the batch, one ``jit``). The PyTorch
model is what a user writes by hand: ``torch.nn.LSTMCell`` plus the LRUA equations
of ``jmeta.memory.lrua`` on batched tensors in a Python loop over the 50 steps,
then ``backward`` and ``torch.optim.Adam``.

It needs torch, which jmeta does not depend on, so it runs in a venv of its own
(``benchmarks/README.md``), and runs jmeta's cells with ``--jmeta-python``::

  /tmp/torchenv/bin/python benchmarks/mann_torch.py --jmeta-python .venv/bin/python

Each cell (framework, round) runs in a fresh subprocess; the rounds alternate the
order of the two frameworks (``harness.interleave``). A cell reports the median of
``--repeats`` timed updates after ``--warmup`` untimed ones (jmeta's first compiles)
on one fixed random batch, and its process's peak RSS. Writes
``cpu_mann_torch.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import harness

FRAMEWORKS = ('jmeta', 'torch')
SHAPES = {
  'classes': 5,
  'steps': 50,
  'image': 20 * 20,
  'controller': 200,
  'slots': 128,
  'width': 40,
  'heads': 4,
  'gamma': 0.95,
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=16, help='episodes per update')
  p.add_argument('--repeats', type=int, default=10, help='timed updates per cell')
  p.add_argument('--warmup', type=int, default=2, help='untimed updates per cell')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--jmeta-python', default=sys.executable)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--single', choices=FRAMEWORKS, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  for name in ('batch', 'repeats', 'rounds'):
    if getattr(args, name) < 1:
      p.error(f'--{name} must be at least 1, got {getattr(args, name)}')
  if args.warmup < 0:
    p.error(f'--warmup must be at least 0, got {args.warmup}')
  return args


def random_batch(batch: int, seed: int = 0):
  """(inputs (batch, steps, image + classes), labels (batch, steps)) as numpy."""
  import numpy as np

  rng = np.random.default_rng(seed)
  n, t = SHAPES['classes'], SHAPES['steps']
  labels = rng.integers(0, n, (batch, t))
  images = (rng.random((batch, t, SHAPES['image'])) < 0.1).astype(np.float32)
  previous = np.zeros((batch, t, n), np.float32)
  previous[:, 1:] = np.eye(n, dtype=np.float32)[labels[:, :-1]]
  return np.concatenate([images, previous], -1), labels


def time_updates(update, warmup: int, repeats: int) -> list[float]:
  for _ in range(warmup):
    update()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    update()
    times.append(time.perf_counter() - start)
  return times


def jmeta_cell(args) -> dict:
  import jax
  import jax.numpy as jnp
  import optax

  import jmeta
  from experiments.mann.train import episode_loss

  s = SHAPES
  model = jmeta.memory.mann(
    s['classes'],
    memory_slots=s['slots'],
    memory_width=s['width'],
    controller_size=s['controller'],
    read_heads=s['heads'],
    gamma=s['gamma'],
  )
  inputs, labels = (jnp.asarray(x) for x in random_batch(args.batch))
  params = model.init(jax.random.key(0), inputs[0])
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(p, opt_state):
    # The MANN experiment's own loss (experiments/mann/train.py); a one-hot label
    # is its one-symbol string.
    loss, grads = jax.value_and_grad(
      lambda p: episode_loss(model, p, inputs, labels[..., None])[0]
    )(p)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  state = [params, optimizer.init(params)]

  def update():
    p, o, loss = step(*state)
    jax.block_until_ready(loss)
    state[:] = [p, o]

  times = time_updates(update, args.warmup, args.repeats)
  return {'version': jax.__version__, 'times_s': times}


def torch_cell(args) -> dict:
  import torch
  from torch import nn

  s = SHAPES

  class MANN(nn.Module):
    def __init__(self, features: int):
      super().__init__()
      reads = s['heads'] * s['width']
      self.cell = nn.LSTMCell(features + reads, s['controller'])
      self.interface = nn.Linear(s['controller'], s['heads'] * (s['width'] + 1))
      self.output = nn.Linear(s['controller'] + reads, s['classes'])

    def forward(self, x):
      b, heads, width, slots = x.shape[0], s['heads'], s['width'], s['slots']
      h = c = x.new_zeros(b, s['controller'])
      reads = x.new_zeros(b, heads, width)
      memory = x.new_zeros(b, slots, width)
      first = nn.functional.one_hot(torch.zeros(b, dtype=torch.long), slots).float()
      usage, read_w = first, first[:, None].expand(b, heads, slots)
      outputs = []
      for t in range(x.shape[1]):
        h, c = self.cell(torch.cat([x[:, t], reads.flatten(1)], -1), (h, c))
        out = self.interface(h).view(b, heads, width + 1)
        keys, alpha = torch.tanh(out[..., :width]), out[..., width]
        least = torch.zeros_like(usage).scatter(
          1, usage.topk(heads, largest=False).indices, 1.0
        )
        gate = torch.sigmoid(alpha)[..., None]
        write_w = gate * read_w + (1 - gate) * least[:, None]
        keep = 1 - nn.functional.one_hot(usage.argmin(1), slots).float()
        memory = memory * keep[..., None] + write_w.transpose(1, 2) @ keys
        cosine = nn.functional.cosine_similarity(
          keys[:, :, None], memory[:, None], dim=-1, eps=1e-8
        )
        read_w = torch.softmax(cosine, -1)
        usage = s['gamma'] * usage + read_w.sum(1) + write_w.sum(1)
        reads = read_w @ memory
        outputs.append(self.output(torch.cat([h, reads.flatten(1)], -1)))
      return torch.stack(outputs, 1)

  inputs, labels = random_batch(args.batch)
  inputs, labels = torch.from_numpy(inputs), torch.from_numpy(labels)
  torch.manual_seed(0)
  model = MANN(inputs.shape[-1])
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

  def update():
    optimizer.zero_grad()
    logits = model(inputs)
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
    loss.backward()
    optimizer.step()

  times = time_updates(update, args.warmup, args.repeats)
  return {
    'version': torch.__version__,
    'threads': torch.get_num_threads(),
    'times_s': times,
  }


def run_single(args) -> None:
  out = (jmeta_cell if args.single == 'jmeta' else torch_cell)(args)
  median = statistics.median(out['times_s'])
  out.update(
    step_s=median,
    episodes_per_s=args.batch / median,
    peak_rss_mib=harness.peak_rss_mib(),
  )
  print(json.dumps(out), flush=True)


def markdown(report: dict) -> str:
  rows = report['results']
  lines = [
    '# MANN training update: jmeta against PyTorch (cpu)',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    f'- Hardware: {report["cpu_model"]}, {report["cpu_count"]} CPUs',
    f'- Episodes per update: {report["batch"]} of {SHAPES["steps"]} steps; '
    f'median of {report["repeats"]} updates after {report["warmup"]} untimed, per '
    'cell; rounds alternate the order of the frameworks.',
    *[f'- {note}' for note in report['notes']],
    '',
    '| framework | version | round | update (s) | episodes/s | peak RSS (MiB) |',
    '|---|---|---:|---:|---:|---:|',
  ]
  for r in rows:
    if 'error' in r:
      lines.append(f'| {r["setting"]} | failed: {r["error"]} | {r["round"]} | | | |')
      continue
    lines.append(
      f'| {r["setting"]} | {r["version"]} | {r["round"]} | {r["step_s"]:.4f} | '
      f'{r["episodes_per_s"]:.1f} | {r["peak_rss_mib"]:.0f} |'
    )
  medians = {}
  for name in FRAMEWORKS:
    steps = [r['step_s'] for r in rows if r['setting'] == name and 'error' not in r]
    if steps:
      medians[name] = statistics.median(steps)
  if len(medians) == 2:
    lines += [
      '',
      f'Median over rounds: jmeta {medians["jmeta"]:.4f} s, PyTorch '
      f'{medians["torch"]:.4f} s per update; jmeta is '
      f'{medians["torch"] / medians["jmeta"]:.1f}x as fast.',
    ]
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.single:
    run_single(args)
    return
  stamp = harness.run_stamp(__file__)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  python = {'jmeta': args.jmeta_python, 'torch': sys.executable}
  flags = ['--batch', str(args.batch), '--repeats', str(args.repeats)]
  flags += ['--warmup', str(args.warmup)]

  def run_one(cell, setting, round_):
    del cell, round_
    command = [python[setting], __file__, '--single', setting, *flags]
    return harness.run_json(command, {}, env={**os.environ, 'PYTHONPATH': root})

  results = harness.interleave(
    [None], {f: None for f in FRAMEWORKS}, run_one, args.rounds
  )
  report = {
    **stamp,
    'cpu_model': harness.cpu_model(),
    'cpu_count': os.cpu_count(),
    'shapes': SHAPES,
    'batch': args.batch,
    'repeats': args.repeats,
    'warmup': args.warmup,
    'notes': args.note,
    'results': results,
    'jmeta_python': args.jmeta_python,
  }
  harness.save_report(args.out, 'cpu_mann_torch', report, markdown(report))


if __name__ == '__main__':
  main()
