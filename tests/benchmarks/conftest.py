"""Puts ``benchmarks/`` on ``sys.path``, as running a script there does, so that the
tests import the scripts and their shared modules (``harness``, ``tables``) by name."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / 'benchmarks'))
