"""The notebooks run top to bottom."""

import pathlib

import nbclient
import nbformat

NOTEBOOKS = pathlib.Path(__file__).parents[2] / 'notebooks'


def test_quickstart_executes_and_meta_learning_helps():
  nb = nbformat.read(NOTEBOOKS / 'quickstart.ipynb', as_version=4)
  nbclient.NotebookClient(nb, timeout=600, kernel_name='python3').execute()
  text = ''.join(
    o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.outputs
  )
  assert 'global cosine similarity' in text
  # The notebook prints the query MSE of one task before and after 10 steps from the
  # meta-learned init; adaptation must reduce it.
  line = next(s for s in text.splitlines() if s.startswith('task 0 query MSE'))
  before, after = (float(part.split(':')[-1]) for part in line.split(','))
  assert after < before
