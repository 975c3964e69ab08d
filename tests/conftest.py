"""Shared fixtures for the core test suite."""

import jax
import pytest


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats enabled; restores the setting afterwards."""
  with jax.enable_x64(True):
    yield
