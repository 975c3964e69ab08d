"""A trained neural statistician's few-shot accuracy under other classification rules.

  python -m experiments.neural_statistician.rules WORKDIR [WORKDIR ...]

restores each finished run's last checkpoint and tests it on the same fixed test
episodes as its ``results.json``, once per rule in ``RULES``, and writes
``WORKDIR/rules.json``. The model's own rule gives the query x the class k whose
posterior over c is closest in KL(q(c | {x}) || q(c | S_k)); a public replication
(ashysheya/neural-stat, ``test_omniglot_accuracy.py``) takes the other direction,
KL(q(c | S_k) || q(c | {x})). The distance between posterior means asks whether the
means alone separate the classes, whatever the variances.
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections

from experiments.common.checkpoint import Checkpointer, with_added_fields
from experiments.common.run_info import git_state, run_info
from experiments.neural_statistician import train
from jmeta import neural_statistician as ns


def posteriors(model: ns.NeuralStatistician, params, support, labels, query, n_way):
  """(q(c | {x}) per query, q(c | S_k) per class)."""
  classes = model.class_contexts(params, support, labels, n_way)
  singles = jax.vmap(lambda x: model.context(params, x[None]))(query)
  return singles, classes


def kl_class_to_query(model):
  def logits(params, support, labels, query, n_way):
    singles, classes = posteriors(model, params, support, labels, query, n_way)
    return ns.kl_logits(classes, singles).T

  return logits


def nearest_mean(model):
  def logits(params, support, labels, query, n_way):
    singles, classes = posteriors(model, params, support, labels, query, n_way)
    diff = singles.mean[:, None] - classes.mean[None]
    return -jnp.sum(diff**2, axis=-1)

  return logits


RULES = {
  'KL(query ‖ class)': lambda model: model.classify,
  'KL(class ‖ query)': kl_class_to_query,
  'nearest posterior mean': nearest_mean,
}


def final_params(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  """The params of the workdir's latest checkpoint."""
  model = train.make_model(config)
  optimizer = train.make_optimizer(config)
  template = train.initial_state(config, model, optimizer, jax.random.key(0))
  checkpointer = Checkpointer(
    workdir,
    config.to_dict(),
    may_differ=train.MAY_DIFFER_ON_RESUME,
    added_fields=train.ADDED_FIELDS,
  )
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f'{workdir} has no checkpoint to test.')
  state = checkpointer.restore(template)
  checkpointer.close()
  return model, state


def evaluate_rules(workdir: str | pathlib.Path) -> dict:
  workdir = pathlib.Path(workdir)
  result = json.loads((workdir / 'results.json').read_text())
  recorded = with_added_fields(result['config'], train.ADDED_FIELDS)
  config = ml_collections.ConfigDict(recorded)
  model, state = final_params(config, workdir)
  if int(state.step) != result['iterations']:
    raise ValueError(
      f'{workdir}: the last checkpoint is at update {int(state.step)}, but '
      f'results.json tested update {result["iterations"]}.'
    )
  test_bank = train.load_banks(config)['test']
  run = {**run_info(), **git_state()}
  out = {'run': run, 'iterations': result['iterations'], 'rules': {}}
  for name, rule in RULES.items():
    out['rules'][name] = {
      setting: train.evaluate_few_shot(
        config, model, state.params, test_bank, setting, rule(model)
      )
      for setting in config.eval.settings
    }
  (workdir / 'rules.json').write_text(json.dumps(out, indent=2))
  return out


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if not argv:
    print(__doc__.split('\n\n')[1], file=sys.stderr)
    return 2
  for workdir in argv:
    out = evaluate_rules(workdir)
    for name, few in out['rules'].items():
      accuracies = ', '.join(f'{s} {100 * r["accuracy"]:.1f}' for s, r in few.items())
      print(f'{workdir}: {name}: {accuracies}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
