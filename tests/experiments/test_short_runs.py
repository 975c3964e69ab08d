"""Every Omniglot algorithm trains bit for bit as it did before the redesign.

``golden_losses.json`` was written by ``python -m tests.experiments.short_runs`` at
the commit it names, before the meta-learner interface of issue 17. On the machine
it names the comparison is exact; elsewhere XLA may order reductions differently,
so other machines compare to a relative 1e-5.

The golden values were recorded with XLA:CPU's YNNPACK fusions on (jaxlib 0.10.2's
default, before ``import jmeta`` turned them off: ``jmeta/xla_workarounds.py``), so
each run happens in a subprocess with ``JMETA_KEEP_XLA_FLAGS=1``: the test checks the
redesign, not the flag. With the fusions off the losses differ in the 7th digit.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import short_runs

ROOT = pathlib.Path(__file__).parents[2]
GOLDEN = json.loads((pathlib.Path(__file__).parent / 'golden_losses.json').read_text())


@pytest.mark.parametrize('algorithm', short_runs.ALGORITHMS)
def test_short_run_matches_the_values_from_before_the_redesign(algorithm):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run(
    [sys.executable, '-m', 'tests.experiments.short_runs', algorithm],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
    env={**env, 'JMETA_KEEP_XLA_FLAGS': '1'},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])['runs'][algorithm]
  want = GOLDEN['runs'][algorithm]
  if short_runs.machine() == GOLDEN['machine']:
    assert got == want
  else:
    for key in want:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5)
