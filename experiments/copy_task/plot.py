"""Cost per sequence against length for several copy-task runs, in one plot.

  python -m experiments.copy_task.plot OUT.png runs/copy_ntm/results.json \
      runs/copy_lstm/results.json
"""

from __future__ import annotations

import json
import pathlib
import sys

from experiments.copy_task import train


def plot_runs(out: str | pathlib.Path, result_files: list[str | pathlib.Path]) -> None:
  """Writes the plot of the ``results.json`` files to ``out``."""
  if not result_files:
    raise ValueError('give at least one results.json to plot.')
  runs = [json.loads(pathlib.Path(f).read_text()) for f in result_files]
  train.plot(runs, out)


if __name__ == '__main__':
  if len(sys.argv) < 3:
    sys.exit(__doc__)
  plot_runs(sys.argv[1], sys.argv[2:])
