"""The README table of a committed neural-statistician run beside the paper's.

  python -m experiments.neural_statistician.report results/neural_statistician/cpu_budget

reads the workdir's ``results.json`` and prints few-shot accuracy on the test
episodes against Edwards & Storkey (2017; their Omniglot few-shot table) and the
lower bound on the test characters, with the run's budget, hardware, load, time
and command. With several workdirs,

  python -m experiments.neural_statistician.report BASELINE OTHER [OTHER ...]

prints one row per run instead, each named by the config fields its command sets
besides the baseline's: an ablation table. With ``--rules`` first, it prints the
accuracy of each run under each classification rule of its ``rules.json``
(``python -m experiments.neural_statistician.rules``).
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

from experiments.common.progress import duration
from experiments.common.run_info import hardware_label

SETTINGS = ('5w1s', '5w5s', '20w1s', '20w5s')
# Edwards & Storkey (2017), Omniglot few-shot accuracy (%), as issue 22 quotes it.
PAPER_ACCURACY = {'5w1s': 98.1, '5w5s': 99.5, '20w1s': 93.2, '20w5s': 98.1}
PAPER = 'Edwards & Storkey (2017)'


def load_result(workdir: str | pathlib.Path) -> dict:
  path = pathlib.Path(workdir) / 'results.json'
  if not path.exists():
    raise FileNotFoundError(f'{path} does not exist: {workdir} holds no finished run.')
  return json.loads(path.read_text())


def setting_label(setting: str) -> str:
  n_way, k_shot = setting[:-1].split('w')
  return f'{n_way}-way {k_shot}-shot'


def accuracy_cell(test: dict) -> str:
  """``mean ± 95% interval`` in percent of one setting's test record."""
  return f'{100 * test["accuracy"]:.1f} ± {100 * test["ci95"]:.1f}'


def budget_label(result: dict) -> str:
  """The run's length against the reference code's (an estimate, not the paper's)."""
  done, length = result['iterations'], result['paper_iterations']
  if done >= length:
    return f"{done:,} updates, the reference code's length (estimated)"
  return f'CPU budget: {done:,} of ~{length:,} updates (reference code)'


def speed_sentence(result: dict) -> str:
  """Seconds per update, hardware and load; of the last stretch for a resumed run,
  whose earlier stretches its ``NOTES.md`` lists."""
  load, hardware = result['load_average'], hardware_label(result['run'])
  start, end = load['start'][0], load['end_of_training'][0]
  per_update = f'{result["seconds_per_update"]:.2f} s per update'
  resumed = result.get('resumed_from_update', 0)
  if not resumed:
    return (
      f'{per_update} on {hardware}, a shared machine under load (1-minute load '
      f'average {start:.1f} at the start of training, {end:.1f} at its end)'
    )
  return (
    f'{per_update} in its last stretch, from update {resumed:,}, on {hardware} '
    f"(1-minute load average {start:.1f} at the stretch's start, {end:.1f} at the "
    "end of training; the run's NOTES.md lists every stretch and what ran beside it)"
  )


def results_table(result: dict) -> str:
  """Markdown: accuracy (%, ± 95% CI over episodes) per setting, ours then the
  paper's, and the test lower bound, then a line on how the run was made."""
  few, run = result['few_shot'], result['run']
  settings = [s for s in SETTINGS if s in few]
  budget = budget_label(result)
  elbo = result['test_elbo']
  lines = [
    '| | '
    + ' | '.join(setting_label(s) for s in settings)
    + ' | test lower bound (nats per image) | updates | train time |',
    '|' + ' --- |' * (len(settings) + 4),
    '| neural statistician (this run) | '
    + ' | '.join(accuracy_cell(few[s]) for s in settings)
    + f' | {elbo["elbo"]["mean"]:.1f} ± {elbo["elbo"]["ci95"]:.1f}'
    + f' | {budget} | {duration(result["train_seconds_total"])} |',
    f'| {PAPER} | '
    + ' | '.join(f'{PAPER_ACCURACY[s]:.1f}' for s in settings)
    + ' | – | – | – |',
    '',
  ]
  first = few[settings[0]]
  lines.append(
    f'{first["episodes"]} fixed test episodes per setting ({first["q_query"]} queries '
    f'per class) from the 423 test characters, rotations as classes; ± is a 95% '
    f'interval over episodes. The lower bound: {elbo["sets"]} sets of '
    f'{elbo["set_size"]} test drawings, {elbo["draws"]} draws each; its parts '
    f'per image: reconstruction {elbo["reconstruction"]["mean"]:.1f}, KL of z '
    f'{elbo["kl_z"]["mean"]:.1f}, KL of c {elbo["kl_c"]["mean"]:.2f}. '
    f'{result["parameters"]:,} parameters, {speed_sentence(result)}, commit '
    f'{run["git_commit"][:7]}{" (dirty)" if run.get("git_dirty") else ""}. '
    f'Command: `{run["command"]}`.'
  )
  return '\n'.join(lines) + '\n'


def overrides(command: str) -> dict[str, str]:
  """The ``--config.FIELD=VALUE`` flags of a run's command, by field."""
  found = re.findall(r'--config\.(\S+?)=(\S+)', command)
  return dict(found)


def config_value(config: dict, field: str) -> str:
  """A dotted ``field`` of a run's recorded config, written as a flag's value."""
  value = config
  for part in field.split('.'):
    value = value[part]
  return str(value)


def ablation_table(names: list[str], results: list[dict]) -> str:
  """Markdown: one row per run (``names``: the workdirs' folder names), the first
  the baseline, each other with the config flags its command sets that the
  baseline's does not (or sets otherwise), and those the baseline's sets that its
  own leaves at another config value.
  Columns: accuracy per setting, the test lower bound and its KLs of c and z (nats
  per image), the parameter count, updates and the commit."""
  base = overrides(results[0]['run']['command'])
  settings = [s for s in SETTINGS if all(s in r['few_shot'] for r in results)]
  head = (
    '| run | change | '
    + ' | '.join(setting_label(s) for s in settings)
    + ' | test lower bound | KL of c | KL of z | parameters | updates | commit |'
  )
  lines = [head, '|' + ' --- |' * (len(settings) + 8)]
  for folder, result in zip(names, results):
    flags = overrides(result['run']['command'])
    changed = {k: v for k, v in flags.items() if base.get(k) != v}
    # A flag of the baseline's that this command leaves out: its config's value.
    for field in base.keys() - flags.keys():
      value = config_value(result['config'], field)
      if value != base[field]:
        changed[field] = value
    name = ', '.join(f'`{k}={v}`' for k, v in sorted(changed.items())) or 'none'
    few, elbo = result['few_shot'], result['test_elbo']
    lines.append(
      f'| {folder} | {name} | '
      + ' | '.join(accuracy_cell(few[s]) for s in settings)
      + f' | {elbo["elbo"]["mean"]:.1f} ± {elbo["elbo"]["ci95"]:.1f}'
      + f' | {elbo["kl_c"]["mean"]:.2f} | {elbo["kl_z"]["mean"]:.1f}'
      + f' | {result["parameters"]:,} | {result["iterations"]:,}'
      + f' | {result["run"]["git_commit"][:7]} |'
    )
  return '\n'.join(lines) + '\n'


def rules_table(names: list[str], tested: list[dict]) -> str:
  """Markdown: accuracy per setting, one row per run (``names``) and rule of its
  ``rules.json`` contents (``tested``)."""
  first = next(iter(tested[0]['rules'].values()))
  settings = [s for s in SETTINGS if s in first]
  lines = [
    '| run | rule | ' + ' | '.join(setting_label(s) for s in settings) + ' |',
    '|' + ' --- |' * (len(settings) + 2),
  ]
  for name, out in zip(names, tested):
    for rule, few in out['rules'].items():
      cells = ' | '.join(accuracy_cell(few[s]) for s in settings)
      lines.append(f'| {name} | {rule} | {cells} |')
  return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv == ['--rules']:
    print(__doc__.split('\n\n')[1], file=sys.stderr)
    return 2
  if argv[0] == '--rules':
    dirs = [pathlib.Path(w) for w in argv[1:]]
    tested = [json.loads((w / 'rules.json').read_text()) for w in dirs]
    print(rules_table([w.name for w in dirs], tested), end='')
  elif len(argv) == 1:
    print(results_table(load_result(argv[0])), end='')
  else:
    names = [pathlib.Path(w).name for w in argv]
    print(ablation_table(names, [load_result(w) for w in argv]), end='')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
