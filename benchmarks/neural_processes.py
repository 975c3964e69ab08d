"""Training steps per second of the CNP, NP and ANP, and what sampling GP tasks costs.

  python benchmarks/neural_processes.py [--repeats 20] [--context 10]

For each model at the notebooks' widths (``experiments/neural_processes/configs``),
batch 16, 50 target points per task (the context among them), GP tasks with an RBF
kernel drawn per task (the ANP notebook), it times, in turn within each round:

* **step**: ``jmeta.make_meta_trainer(...).step`` on one fixed, pre-sampled batch;
* **step + sampling**: the experiment's step, ``jmeta.with_task_sampling``, which
  draws the batch (kernels, inputs, a Cholesky factor per task) inside the same
  compiled program;
* **sampling**: the jitted sampler alone, ``gp_tasks(...).sample``.

The share of sampling in a step is sampling / (step + sampling). Every time is a
median of ``--repeats`` rounds (after a warm-up round), the three timed in turn in
each, on whatever machine runs it; on the shared 2-core CPU this project's reports
come from, other processes run beside it, so the times are "measured on a shared
CPU", not clean.
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness

MODELS = ('cnp', 'np', 'anp')


def interleaved_medians(calls: dict, repeats: int) -> dict:
  """Median seconds of each of ``calls`` (name -> a function returning arrays),
  timed in turn within each of ``repeats`` rounds, so that the load of a shared
  machine falls on all of them alike."""
  import jax

  for call in calls.values():  # a warm-up round
    jax.block_until_ready(call())
  times = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      start = time.perf_counter()
      jax.block_until_ready(call())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def measure(model: str, context: int, targets: int, batch: int, repeats: int) -> dict:
  import jax
  import optax

  import jmeta
  from experiments.neural_processes import train
  from experiments.neural_processes.configs import anp, cnp
  from experiments.neural_processes.configs import np as latent
  from jmeta import neural_processes as nps

  config = {'cnp': cnp, 'np': latent, 'anp': anp}[model].get_config('gp_random')
  process = train.make_process(config)
  learner = nps.neural_process_learner(process, key=jax.random.key(1), batching='vmap')
  tasks = nps.gp_tasks(length_scale=(0.1, 0.6), signal_std=(0.1, 1.0))
  sample = jax.jit(lambda k: tasks.sample(k, batch, context, targets))
  key = jax.random.key(0)
  params = process.init(jax.random.key(2), jax.numpy.zeros((1, 1)))
  trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-4))
  sampling = jmeta.with_task_sampling(
    trainer, lambda k: tasks.sample(k, batch, context, targets)
  )
  fixed_batch = sample(key)
  state = trainer.init(params)
  start = time.perf_counter()
  jmeta.precompile(trainer.step, state, fixed_batch)
  compile_s = time.perf_counter() - start
  jmeta.precompile(sampling.step, state, key)
  # Each call starts from the same state: the times do not depend on the values.
  medians = interleaved_medians(
    {
      'step_s': lambda: trainer.step(state, fixed_batch),
      'step_with_sampling_s': lambda: sampling.step(state, key),
      'sampling_s': lambda: sample(key),
    },
    repeats,
  )
  count = sum(int(p.size) for p in jax.tree.leaves(params))
  return {
    'model': model,
    'parameters': count,
    'batch': batch,
    'context': context,
    'targets': targets,
    'step_compile_s': compile_s,
    **medians,
    'sampling_share': medians['sampling_s']
    / (medians['step_s'] + medians['sampling_s']),
  }


def table(rows: list[dict]) -> str:
  lines = [
    '| model | parameters | step (ms) | steps/s | step + sampling in jit (ms) | '
    'sampling alone (ms) | sampling share |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
      f'| {r["model"].upper()} | {r["parameters"]:,} | {1e3 * r["step_s"]:.1f} | '
      f'{1 / r["step_s"]:.1f} | {1e3 * r["step_with_sampling_s"]:.1f} | '
      f'{1e3 * r["sampling_s"]:.2f} | {100 * r["sampling_share"]:.1f}% |'
    )
  return '\n'.join(lines) + '\n'


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--repeats', type=int, default=20)
  parser.add_argument('--context', type=int, default=10)
  parser.add_argument('--targets', type=int, default=50)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--models', default=','.join(MODELS))
  parser.add_argument('--out', default=harness.RESULTS)
  args = parser.parse_args()
  rows = []
  for model in args.models.split(','):
    rows.append(measure(model, args.context, args.targets, args.batch, args.repeats))
    print(rows[-1], flush=True)
  report = {
    **harness.run_stamp(__file__),
    'hardware': harness.hardware(),
    'note': 'measured on a shared CPU: other processes ran beside it',
    'rows': rows,
  }
  hw = report['hardware']
  text = (
    '# Neural processes: training steps per second, and GP sampling (cpu)\n\n'
    f'- Date: {report["date"]}; command: `{report["command"]}`\n'
    f'- Hardware: {hw["cpu_model"]}, {hw["cpu_count"]} CPUs; backend '
    f'`{hw["backend"]}`; jax {hw["jax"]}. **Measured on a shared CPU** (a '
    'training run and other jobs ran beside it): the times are upper bounds of '
    "an idle machine's, and their ratios are what this report is for.\n"
    f'- Batch {args.batch}, {args.targets} target points per task, the first '
    f'{args.context} of them the context; GP tasks with a random RBF kernel per '
    "task; the notebooks' widths (128). Median of "
    f'{args.repeats} rounds after a warm-up round, the three timed in turn in '
    'each.\n'
    '- *step*: the meta-update on a fixed batch; *step + sampling in jit*: the '
    "experiment's step, sampling its batch inside the compiled update; *sampling "
    'alone*: the jitted GP sampler; *share*: sampling / (step + sampling).\n\n'
    + table(rows)
  )
  harness.save_report(args.out, 'cpu_neural_processes', report, text)


if __name__ == '__main__':
  main()
