"""Every gradient-based learner by name, for configs: ``make_learner('maml', ...)``."""

from __future__ import annotations

from typing import Any

from jmeta.algorithms import LEARNERS
from jmeta.inner_loop import LossFn
from jmeta.learner import MetaLearner
from jmeta.models.base import Model


def make_learner(
  name: str, model: Model, loss_fn: LossFn, **kwargs: Any
) -> MetaLearner:
  """The learner called ``name`` (a key of ``LEARNERS``) built with ``kwargs``.

  The factories live in ``jmeta/algorithms/``, one module each, and take the model,
  the loss and their own keyword options (see each factory's docstring).
  """
  if name not in LEARNERS:
    raise ValueError(f'unknown learner {name!r}; expected one of {sorted(LEARNERS)}.')
  return LEARNERS[name](model, loss_fn, **kwargs)
