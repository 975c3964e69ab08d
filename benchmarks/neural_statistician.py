"""Training steps per second of the neural statistician on Omniglot sets.

  python benchmarks/neural_statistician.py [--repeats 20] [--batch 16] [--config-arg reference]
  python benchmarks/neural_statistician.py --flops  # XLA's FLOP count per update, no timing

Times, in turn within each round, the experiment's update
(``experiments/neural_statistician/train.py``: it draws its sets of 5 drawings from
the background characters and binarises them inside the compiled step) and the
same Adam step on one fixed, pre-drawn batch of sets, at the experiment's default
(CPU-sized) widths. Every time is a median of ``--repeats`` rounds after a warm-up
round. The machine's 1-minute load average (``os.getloadavg``) before and after is
in the report: on the shared 2-core CPU other jobs run beside it, so the times are
"measured on a shared, loaded CPU", not clean.

``--flops`` times nothing: it writes XLA's count (``cost_analysis``) of the FLOPs of
one update (the Adam step on a fixed batch) and the parameter count, for the
default config and ``default.py:reference`` (the reference code's networks), each at
its config's batch size (``neural_statistician_flops.md``).
"""

from __future__ import annotations

import argparse
import os

import harness
from neural_processes import interleaved_medians


def fixed_step_fn(config, model, optimizer, fixed):
  """One Adam step of the experiment's loss on the batch of sets ``fixed``."""
  import jax
  import optax

  from experiments.neural_statistician import train

  def fixed_step(state, key):
    grad = jax.grad(model.loss, has_aux=True)
    grads, (_, stats) = grad(state.params, fixed, key, 1.0)
    updates, opt = optimizer.update(grads, state.opt_state, state.params)
    params = model.with_batch_stats(optax.apply_updates(state.params, updates), stats)
    return train.TrainState(state.step + 1, params, opt)

  return fixed_step


def count_flops(config_arg: str) -> dict:
  """XLA's FLOPs of one update of ``default.py:<config_arg>``, at its batch size."""
  import jax
  import jax.numpy as jnp
  from flops import xla_flops

  from experiments.neural_statistician import train
  from experiments.neural_statistician.configs import default

  config = default.get_config(config_arg)
  model = train.make_model(config)
  optimizer = train.make_optimizer(config)
  state = train.initial_state(config, model, optimizer, jax.random.key(0))
  fixed = jnp.zeros((config.batch_size, config.data.set_size, *model.image_shape))
  step = fixed_step_fn(config, model, optimizer, fixed)
  return {
    'config': f'default.py:{config_arg}' if config_arg else 'default.py',
    'batch_sets': config.batch_size,
    'parameters': sum(int(p.size) for p in jax.tree.leaves(state.params)),
    'xla_flops_per_update': xla_flops(step, state, jax.random.key(1)),
  }


def measure(batch: int, repeats: int, config_arg: str = '') -> dict:
  import jax
  import jax.numpy as jnp

  from experiments.neural_statistician import train
  from experiments.neural_statistician.configs import default

  config = default.get_config(config_arg)
  config.batch_size = batch
  banks = train.load_banks(config)
  model = train.make_model(config)
  optimizer = train.make_optimizer(config)
  state = train.initial_state(config, model, optimizer, jax.random.key(0))
  params = state.params
  update = train.make_update(config, model, optimizer, banks['train'])
  fixed = jax.random.bernoulli(
    jax.random.key(1), 0.2, (batch, config.data.set_size, *model.image_shape)
  ).astype(jnp.float32)

  fixed_step = jax.jit(fixed_step_fn(config, model, optimizer, fixed))

  key = jax.random.key(2)
  # The update donates its state: each call feeds it the state the last returned.
  carried = [jax.tree.map(jnp.copy, state)]

  def experiment_update():
    carried[0], metrics = update(carried[0], key, banks['train'])
    return metrics

  medians = interleaved_medians(
    {
      'update_s': experiment_update,
      'fixed_batch_s': lambda: fixed_step(state, key),
    },
    repeats,
  )
  count = sum(int(p.size) for p in jax.tree.leaves(params))
  return {
    'batch_sets': batch,
    'set_size': config.data.set_size,
    'parameters': count,
    **medians,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--config-arg', default='', choices=('', 'reference'))
  parser.add_argument('--flops', action='store_true')
  parser.add_argument('--out', default=harness.RESULTS)
  args = parser.parse_args()
  if args.flops:
    return save_flops(args.out)
  load_before = os.getloadavg()
  row = measure(args.batch, args.repeats, args.config_arg)
  load_after = os.getloadavg()
  report = {
    **harness.run_stamp(__file__),
    'hardware': harness.hardware(),
    'note': 'measured on a shared, loaded CPU: other processes ran beside it',
    'load_average_before': list(load_before),
    'load_average_after': list(load_after),
    'row': row,
  }
  hw = report['hardware']
  text = (
    '# Neural statistician: training steps per second (cpu)\n\n'
    f'- Date: {report["date"]}; command: `{report["command"]}`\n'
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; backend '
    f'`{hw["backend"]}`; jax {hw["jax"]}. **Measured on a shared, loaded CPU**: '
    f'1-minute load average {load_before[0]:.1f} before and {load_after[0]:.1f} '
    f'after (on {hw["cpu_count"]} cores), so these are upper bounds of an idle '
    "machine's times.\n"
    f"- The experiment's {args.config_arg or 'default'} widths "
    f'({row["parameters"]:,} parameters), '
    f'{row["batch_sets"]} sets of {row["set_size"]} Omniglot images per update; '
    f'median of {args.repeats} rounds after a warm-up round.\n\n'
    '| step | ms per update | updates/s |\n|---|---:|---:|\n'
    f'| experiment update (sets drawn and binarised in jit) | '
    f'{1e3 * row["update_s"]:.0f} | {1 / row["update_s"]:.2f} |\n'
    f'| same step on a fixed batch | {1e3 * row["fixed_batch_s"]:.0f} | '
    f'{1 / row["fixed_batch_s"]:.2f} |\n'
  )
  name = 'cpu_neural_statistician' + (f'_{args.config_arg}' if args.config_arg else '')
  harness.save_report(args.out, name, report, text)


def save_flops(out: str) -> None:
  rows = [count_flops(arg) for arg in ('', 'reference')]
  report = {**harness.run_stamp(__file__), 'hardware': harness.hardware(), 'rows': rows}
  base = rows[0]['xla_flops_per_update']
  lines = [
    '# Neural statistician: FLOPs per update (XLA cost analysis)\n',
    f'- Date: {report["date"]}; command: `{report["command"]}`; jax '
    f'{report["hardware"]["jax"]}, backend `{report["hardware"]["backend"]}`.',
    '- One Adam step of the experiment on a fixed batch of sets of 5 images, at '
    "each config's batch size; XLA's count of the compiled step. Nothing timed.\n",
    '| config | sets per update | parameters | GFLOP per update | x default |',
    '|---|---:|---:|---:|---:|',
  ]
  for r in rows:
    flops = r['xla_flops_per_update']
    lines.append(
      f'| `{r["config"]}` | {r["batch_sets"]} | {r["parameters"]:,} | '
      f'{flops / 1e9:.1f} | {flops / base:.0f} |'
    )
  harness.save_report(out, 'neural_statistician_flops', report, '\n'.join(lines) + '\n')


if __name__ == '__main__':
  main()
