"""Markdown table of committed Omniglot results beside the papers' numbers.

python -m experiments.omniglot.report results/omniglot
"""

from __future__ import annotations

import importlib
import inspect
import json
import pathlib
import sys

from experiments.common.run_info import hardware_label
from experiments.omniglot.configs.base import SETTINGS, trains_on_validation
from jmeta import metric

# Test accuracy (%) reported by the papers, per setting, and the citation; a third
# item, where present, is a note on the paper's protocol for every run's row.
PAPER = {
  'maml': (
    {'5w1s': 98.7, '5w5s': 99.9, '20w1s': 95.8, '20w5s': 98.9},
    'Finn et al. (2017)',
  ),
  'fomaml': (
    {'5w1s': 98.3, '5w5s': 99.2, '20w1s': 89.4, '20w5s': 97.9},
    'Finn et al. (2017), first-order approximation row',
  ),
  'reptile': (
    {'5w1s': 97.68, '5w5s': 99.48, '20w1s': 89.43, '20w5s': 97.12},
    'Nichol et al. (2018), transductive',
  ),
  'maml_plus_plus': (
    {'5w1s': 99.47, '5w5s': 99.93, '20w1s': 97.65, '20w5s': 99.33},
    'Antoniou et al. (2019)',
  ),
  'imaml': (
    {'5w1s': 99.16, '5w5s': 99.67, '20w1s': 94.46, '20w5s': 98.69},
    'Rajeswaran et al. (2019)',
  ),
  'meta_sgd': ({'5w1s': 99.53, '5w5s': 99.93}, 'Li et al. (2017)'),
  'meta_lstm': (
    {},
    'Ravi & Larochelle (2017) report Mini-ImageNet only: 43.44 (5w1s), 60.60 (5w5s)',
  ),
  'anil': ({'20w1s': 96.2, '20w5s': 98.0}, 'Raghu et al. (2020)'),
  'protonet': (
    {'5w1s': 98.8, '5w5s': 99.7, '20w1s': 96.0, '20w5s': 98.9},
    'Snell et al. (2017)',
  ),
  'matching': (
    {'5w1s': 98.1, '5w5s': 98.9, '20w1s': 93.8, '20w5s': 98.5},
    'Vinyals et al. (2016)',
  ),
  'relation': (
    {'5w1s': 99.6, '5w5s': 99.8, '20w1s': 97.6, '20w5s': 99.1},
    'Sung et al. (2018)',
  ),
  'meta_networks': (
    {'5w1s': 98.95, '20w1s': 97.0},
    'Munkhdalai & Yu (2017)',
    # Its reference training loop has no stopping rule.
    'paper trains for an unstated number of episodes',
  ),
  'mann': (
    {},
    'Santoro et al. (2016) report one-shot sequences (Table 1), not N-way K-shot '
    'episodes',
  ),
  'siamese': (
    {'5w1s': 96.7, '20w1s': 88.0},
    'Koch et al. (2015), no fine-tuning, as reported by Vinyals et al. (2016)',
  ),
}


def recipe(algorithm: str, setting: str):
  """The algorithm's config file for ``setting``: the paper's recipe."""
  module = importlib.import_module(f'experiments.omniglot.configs.{algorithm}')
  return module.get_config(setting)


def full_iterations(algorithm: str, setting: str) -> int:
  """The iteration count of the algorithm's config, i.e. the full-scale run."""
  return recipe(algorithm, setting).num_iterations


# Optimisation fields of the paper's recipe; a run that overrides one says so
# beside its number (the iteration count has a column of its own).
RECIPE_FIELDS = (
  'inner_learning_rate',
  'inner_steps',
  'meta_batch_size',
  'outer_learning_rate',
  'outer_adam_eps',
  'eval.inner_steps',
)


def overrides(config: dict) -> list[str]:
  """'field value (config: default)' for each ``RECIPE_FIELDS`` entry, and each
  field of the algorithm's own block (e.g. ``imaml.cg_steps``), that ``config``
  sets apart from its algorithm's config file (none without a ``setting``); an
  unset field reads 'unset'."""
  if 'setting' not in config:
    return []
  # Through JSON, as the run's config was saved: tuples become lists.
  default = json.loads(
    json.dumps(recipe(config['algorithm'], config['setting']).to_dict())
  )
  own = config['algorithm']
  block = sorted(set(config.get(own) or {}) | set(default.get(own) or {}))
  out = []
  for field in (*RECIPE_FIELDS, *(f'{own}.{k}' for k in block)):
    ours, theirs = config, default
    for part in field.split('.'):
      ours, theirs = (ours or {}).get(part), (theirs or {}).get(part)
    if ours != theirs:
      out.append(f'{field} {_value(ours)} (config: {_value(theirs)})')
  return out


def _rows(r: dict):
  """(setting, test results) per N-way or K-shot evaluation of one run."""
  config = r['config']
  yield config['setting'], r['test']
  way, shot = config['setting'].split('w')
  for other, test in sorted(
    r.get('test_extra_ways', {}).items(), key=lambda t: int(t[0])
  ):
    yield f'{other}w{shot}', test
  for other, test in sorted(
    r.get('test_extra_shots', {}).items(), key=lambda t: int(t[0])
  ):
    yield f'{way}w{other}s', test


def _value(value) -> str:
  return 'unset' if value is None else str(value)


def _variant(config: dict, devices: int = 1, backend: str = 'cpu') -> str:
  """What sets a run apart from the paper's recipe, for the table.

  ``devices``: how many devices the meta-batch was sharded over (a run's
  ``train_devices``; runs from before it was recorded trained on one).
  """
  notes = overrides(config)
  notes.append(_batch_norm(config))
  filters = config['model'].get('filters', 64)
  if filters != 64:
    notes.append(f'{filters} filters')
  dtype = config['model'].get('compute_dtype', 'float32')
  if dtype != 'float32':
    notes.append(f'{dtype} compute')
  precision = config['model'].get('matmul_precision', 'default')
  if precision != 'default':
    notes.append(f'matmul precision {precision}')
  notes += _network_options(config)
  if config['algorithm'] == 'reptile':
    notes.append(_reptile_inner_loop(config))
  extra = config.get('metric', {})
  if config['algorithm'] == 'matching':
    notes.append('FCE' if extra.get('full_context') else 'no FCE')
  if config['algorithm'] == 'siamese':
    notes.append(f'{extra.get("loss")} loss')
  notes += PAPER.get(config['algorithm'], ())[2:]
  if extra.get('embedding_loss', 'none') != 'none':
    notes.append(f'+ {extra["embedding_loss_weight"]} x {extra["embedding_loss"]}')
  if trains_on_validation(config):
    notes.append('trained on the train + val characters')
  patience = config.get('early_stopping_patience', 0)
  if patience:
    notes.append(f'early stopping on val loss, patience {patience} validations')
  if devices > 1:
    notes.append(f'sharded over {devices} {backend.upper()} devices')
  return ', '.join(notes)


def iterations(r: dict) -> str:
  """The iterations cell: those trained, of the recipe's full length; a run whose
  length the protocol sets from validation (early stopping, or the retraining on
  train + val that follows it) counts against its own cap or length."""
  config = r['config']
  stopping = r.get('early_stopping')
  if stopping and stopping['stopped']:
    return f'{r["iterations"]:,}, stopped early (best at {stopping["best_step"]:,})'
  if stopping or trains_on_validation(config):
    return f'{r["iterations"]:,} of {config["num_iterations"]:,}'
  full = full_iterations(config['algorithm'], config['setting'])
  return f'{r["iterations"]:,} of {full:,}'


def _batch_norm(config: dict) -> str:
  """The run's batch-norm mode; 'no BN' for a metric learner whose factory takes no
  ``batch_norm`` (its own networks have none, as Meta Networks')."""
  factory = metric.METRIC_LEARNERS.get(config['algorithm'])
  if factory is not None and 'batch_norm' not in inspect.signature(factory).parameters:
    return 'no BN'
  # Gradient-based configs have no field: their batch norm is transductive.
  return f'BN {config["model"].get("batch_norm", "transductive")}'


def _network_options(config: dict) -> list[str]:
  """The reference-network options a run sets, MAML's and the 2017 PyTorch init
  (none before they existed)."""
  model = config['model']
  eps = model.get('batch_norm_eps', 1e-5)
  chosen = {
    'no BN scale': model.get('batch_norm_scale', True) is False,
    f'BN eps {eps:g}': eps != 1e-5,
    'standard-normal head': model.get('head_init', 'glorot_uniform') == 'normal',
    'PyTorch-2017 init': model.get('block_init', 'glorot_uniform') == 'torch_2017',
    'BN offsets not adapted': (
      config.get('inner_adapts', 'all') == 'all_but_batch_norm_offsets'
    ),
  }
  return [note for note, on in chosen.items() if on]


def _reptile_inner_loop(config: dict) -> str:
  """Reptile's inner loop: the paper's minibatches or full-batch steps, and whether
  the inner Adam state is kept (the reference code) or reset per task."""
  train, test = (
    config.get('inner_batch_size', 0),
    config['eval'].get('inner_batch_size', 0),
  )
  shots = config['data'].get('train_k_shot', 0) or config['data']['k_shot']
  train = f'batches of {train}' if train else 'full batch'
  test = f'batches of {test}' if test else 'full batch'
  loop = f'inner steps: {train} of {shots}-shot train episodes, {test} at test'
  if config.get('inner_optimizer') != 'adam':
    return loop
  # Runs from before the field existed reset their inner state per task.
  kept = config.get('persistent_inner_state', False)
  return f'{loop}, inner Adam state {"kept" if kept else "reset per task"}'


def table(results_dir: str | pathlib.Path) -> str:
  """One row per (run, test way): gradient-based learners first, then metric ones."""
  rows = [
    '| algorithm | setting | split | ours (600 episodes) | ours (1000 episodes) | '
    'paper | variant | iterations (of full) | hardware | train time | command |',
    '|' + ' --- |' * 11,
  ]
  order = list(PAPER)
  runs = [
    json.loads(p.read_text())
    for p in pathlib.Path(results_dir).glob('*/test_step*.json')
  ]
  runs.sort(
    key=lambda r: (
      order.index(r['config']['algorithm']),
      SETTINGS.index(r['config']['setting']),
      # Runs of one setting (e.g. float32 and bfloat16) in a fixed order.
      r['run']['command'],
    )
  )
  for r in runs:
    config = r['config']
    paper = PAPER[config['algorithm']][0]
    for setting, test in _rows(r):

      def cell(n, test=test):
        t = test.get(str(n))
        return f'{100 * t["accuracy"]:.2f} ± {100 * t["ci95"]:.2f}' if t else '–'

      rows.append(
        f'| {config["algorithm"]} | {setting} | {config["data"]["protocol"]} | '
        f'{cell(600)} | {cell(1000)} | '
        f'{paper.get(setting, "–")} | '
        f'{_variant(config, r.get("train_devices", 1), r["run"]["backend"])} | '
        f'{iterations(r)} | '
        f'{hardware_label(r["run"])} | {r["train_seconds_total"]:.0f} s | '
        f'`{r["run"]["command"]}` |'
      )
  return '\n'.join(rows) + '\n'


if __name__ == '__main__':
  print(table(sys.argv[1] if len(sys.argv) > 1 else 'results/omniglot'), end='')
