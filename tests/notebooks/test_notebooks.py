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


def test_first_vs_second_order_executes_on_a_tiny_run(monkeypatch):
  """The tiny comparison run needs the Omniglot archives (JMETA_OMNIGLOT_DIR)."""
  monkeypatch.setenv('JMETA_NOTEBOOK_SMOKE', '1')
  nb = nbformat.read(NOTEBOOKS / 'first_vs_second_order.ipynb', as_version=4)
  nbclient.NotebookClient(nb, timeout=900, kernel_name='python3').execute()
  outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
  text = ''.join(o.get('text', '') for o in outputs)
  table = text.split('estimator')[1].splitlines()
  maml_row = next(line for line in table if line.startswith('maml '))
  # MAML against itself: exactly cosine 1, norm ratio 1, relative error 0.
  assert maml_row.split()[1:4] == ['1.0000', '1.0000', '0.0000']
  assert next(line for line in table if line.startswith('fomaml '))
  assert 'at iteration 30' in text
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 2
