"""Whether the training loop runs ahead of the device: dispatch against compute time.

The Omniglot experiments' loop (``experiments/omniglot/train.py``) calls
``trainer.step(state, fold_in(key, step), bank)`` with the tasks sampled inside the
compiled step from a device-resident uint8 bank, and sums the metrics on device,
fetching them only every ``log_every`` steps. This script runs that loop for
``--steps`` steps of second-order MAML 5w1s (strided Conv4, meta-batch 32, MAML's
Omniglot episode shapes; a random bank of Omniglot's shape) under
``jax.transfer_guard_device_to_host('disallow')``, which raises on any implicit
device-to-host copy where the backend has one to make (GPUs; a CPU device shares
host memory, so there it guards nothing). It reports:

* **dispatch**: wall time until the loop returned, per step (the host's own work);
* **total**: until the summed metrics were ready, per step;
* **ahead**: how many steps were still to run when the loop returned,
  ``(total - dispatch) / (total / steps)``;
* the same for the loop fetching the loss after every step
  (``float(metrics['loss'])``), the habit the experiments avoid.

A loop that waits on the device is 0 steps ahead; one that does not is as far ahead
as the runtime lets work queue up before it makes the host wait.

  python benchmarks/dispatch.py   # writes results/<backend>_dispatch.{json,md}
"""

from __future__ import annotations

import argparse
import time

import harness


def make_loop(meta_batch: int):
  """(trainer, state, bank, key) for second-order MAML 5w1s with in-step sampling."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  import jmeta
  from jmeta.data import make_episode_sampler

  # Omniglot's background set: 964 characters, 20 drawings each, 28x28.
  rng = np.random.default_rng(0)
  bank = jnp.asarray(rng.integers(0, 256, (964, 20, 28, 28), dtype=np.uint8))
  sampler = make_episode_sampler(bank, n_way=5, k_shot=1, q_query=1)
  model = jmeta.conv4(5)
  estimator = jmeta.maml(
    model,
    jmeta.losses.cross_entropy,
    inner_steps=1,
    inner_learning_rate=harness.INNER_LEARNING_RATE,
  )
  trainer = jmeta.with_task_sampling(
    jmeta.make_meta_trainer(estimator, optax.adam(1e-3)),
    lambda key, bank: sampler.sample_from(bank, key, meta_batch),
  )
  probe = sampler.sample(jax.random.key(0), 1)
  state = trainer.init(model.init(jax.random.key(1), probe.support_inputs[0]))
  return trainer, state, bank, jax.random.key(2)


def run_loop(trainer, state, bank, key, steps: int, fetch_every_step: bool):
  """(dispatch seconds, total seconds, state) of ``steps`` steps of the loop."""
  import jax
  import jax.numpy as jnp

  window = None
  start = time.perf_counter()
  with jax.transfer_guard_device_to_host('allow' if fetch_every_step else 'disallow'):
    for step in range(steps):
      state, metrics = trainer.step(state, jax.random.fold_in(key, step), bank)
      window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
      if fetch_every_step:
        float(metrics['loss'])
    dispatched = time.perf_counter() - start
  jax.block_until_ready(window)
  return dispatched, time.perf_counter() - start, state


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--steps', type=int, default=50)
  p.add_argument('--meta-batch', type=int, default=32)
  p.add_argument('--out', default=harness.RESULTS)
  p.add_argument('--note', action='append', default=[], help='a line for the report')
  args = p.parse_args(argv)
  if args.steps < 1:
    p.error(f'--steps must be at least 1, got {args.steps}')
  return args


def main(argv=None) -> None:
  args = parse_args(argv)

  import jax

  import jmeta

  trainer, state, bank, key = make_loop(args.meta_batch)
  jmeta.precompile(trainer.step, state, key, bank)
  _, _, state = run_loop(trainer, state, bank, key, 2, False)  # warm-up
  rows = []
  for name, fetch in (('sums on device', False), ('fetches every step', True)):
    dispatched, total, state = run_loop(trainer, state, bank, key, args.steps, fetch)
    rows.append(
      {
        'loop': name,
        'steps': args.steps,
        'dispatch_s': dispatched,
        'total_s': total,
        'dispatch_ms_per_step': 1e3 * dispatched / args.steps,
        'total_ms_per_step': 1e3 * total / args.steps,
        'steps_ahead': (total - dispatched) / (total / args.steps),
      }
    )
    print(rows[-1], flush=True)
  report = {
    **harness.run_stamp(__file__),
    'config': 'maml 5w1s, strided Conv4, 1 inner step, meta-batch '
    f'{args.meta_batch}, tasks sampled in the step from a random 964x20x28x28 bank',
    'hardware': harness.hardware(),
    'notes': args.note,
    'rows': rows,
  }
  harness.save_report(
    args.out, f'{jax.default_backend()}_dispatch', report, markdown(report)
  )


def markdown(report: dict) -> str:
  hw = report['hardware']
  lines = [
    f'# Does the training loop run ahead of the device? ({hw["backend"]})',
    '',
    f'- Date: {report["date"]}; command: `{report["command"]}`',
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; backend '
    f'`{hw["backend"]}` ({", ".join(hw["devices"])}); jax {hw["jax"]}',
    f'- {report["config"]}; compiled with `jmeta.precompile`, two warm-up steps.',
    '- *dispatch*: until the Python loop returned; *total*: until the summed metrics '
    'were ready; *ahead*: steps still to run when the loop returned. The first loop '
    "is the Omniglot experiments' (metrics summed on device, under "
    '`jax.transfer_guard_device_to_host("disallow")`); the second also fetches the '
    'loss after every step.',
    *(f'- {n}' for n in report['notes']),
    '',
    '| loop | steps | dispatch (ms/step) | total (ms/step) | ahead (steps) |',
    '|---|---:|---:|---:|---:|',
  ]
  for r in report['rows']:
    lines.append(
      f'| {r["loop"]} | {r["steps"]} | {r["dispatch_ms_per_step"]:.2f} | '
      f'{r["total_ms_per_step"]:.2f} | {r["steps_ahead"]:.1f} |'
    )
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  main()
