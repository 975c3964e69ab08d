"""Why a run's log-likelihood is what it is: error against claimed uncertainty.

  python -m experiments.neural_processes.calibration 5 \
      results/neural_processes/np_gp_fixed results/neural_processes/anp_gp_fixed

restores each workdir's kept checkpoints (the last two) and, on its family's
held-out tasks with the given number of context points, prints per checkpoint the
log-likelihood of ``predict``'s factorised predictive (z at the mean of q(z | C)),
the MSE of its mean, the mean of the squared standardised residuals
((y - mean) / std)^2 (1 for a calibrated predictive; above 1: overconfident), the
mean predicted std, and the fraction of targets outside mean +- 2 std (4.6% for a
calibrated Gaussian).
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import optax

import jmeta
from experiments.common.checkpoint import Checkpointer
from experiments.neural_processes import families, train


def calibration(workdir: str | pathlib.Path, num_context: int) -> list[dict]:
  """One row per kept checkpoint of ``workdir`` (a neural-process run)."""
  workdir = pathlib.Path(workdir)
  config = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  config.context_sizes = tuple(config.context_sizes)
  config.eval.context_sizes = tuple(config.eval.context_sizes)
  if not train.is_process(config):
    raise ValueError(f'{workdir} is not a neural-process run.')
  family = families.make_family(config.data)
  learner, process = train.make_learner(config)
  params = process.init(jax.random.key(0), jnp.zeros((1, 1)))
  trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-4))
  template = trainer.init(params)
  checkpointer = Checkpointer(workdir, config.to_dict())
  x, y, _, _ = train.evaluation_tasks(config, family)
  batch = families.evaluation_batch(x, y, num_context, max(config.eval.context_sizes))

  @jax.jit
  def scores(p):
    pred = jax.vmap(process.predict, (None, 0, 0, 0))(
      p, batch.support_inputs, batch.support_targets, batch.query_inputs
    )
    z = (batch.query_targets - pred.mean) / pred.std
    ll = -0.5 * (jnp.square(z) + jnp.log(2 * jnp.pi * jnp.square(pred.std)))
    return {
      'log_likelihood': jnp.mean(ll),
      'mse': jnp.mean(jnp.square(batch.query_targets - pred.mean)),
      'standardised_sq': jnp.mean(jnp.square(z)),
      'mean_std': jnp.mean(pred.std),
      'outside_2sd': jnp.mean(jnp.abs(z) > 2),
    }

  rows = []
  kept = (workdir / 'checkpoints').iterdir()
  for step in sorted(int(p.name) for p in kept if p.name.isdigit()):
    state = checkpointer.restore(template, step)
    values = jax.device_get(scores(state.params))
    rows.append(
      {'run': workdir.name, 'step': step, **{k: float(v) for k, v in values.items()}}
    )
  checkpointer.close()
  return rows


def table(rows: list[dict], num_context: int) -> str:
  lines = [
    f'| run | update | log-lik. (z = mean), {num_context} context | MSE | '
    'mean ((y - m) / s)^2 | mean s | outside m ± 2s |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for r in rows:
    lines.append(
      f'| {r["run"]} | {r["step"]:,} | {r["log_likelihood"]:.2f} | {r["mse"]:.3f} | '
      f'{r["standardised_sq"]:.2f} | {r["mean_std"]:.3f} | '
      f'{100 * r["outside_2sd"]:.1f}% |'
    )
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  if len(sys.argv) < 3:
    sys.exit(__doc__)
  context = int(sys.argv[1])
  print(table([r for w in sys.argv[2:] for r in calibration(w, context)], context))
