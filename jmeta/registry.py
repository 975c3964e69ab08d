"""Every meta-gradient estimator by name, for configs: ``make_estimator('maml', ...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmeta.anil import anil
from jmeta.estimators import MetaGradientEstimator, fomaml, maml, pretrain, reptile
from jmeta.imaml import imaml
from jmeta.inner_loop import LossFn
from jmeta.maml_plus_plus import maml_plus_plus
from jmeta.meta_sgd import meta_sgd
from jmeta.models.base import Model

ESTIMATORS: dict[str, Callable[..., MetaGradientEstimator]] = {
  'maml': maml,
  'fomaml': fomaml,
  'reptile': reptile,
  'pretrain': pretrain,
  'imaml': imaml,
  'meta_sgd': meta_sgd,
  'anil': anil,
  'maml++': maml_plus_plus,
}


def make_estimator(
  name: str, model: Model, loss_fn: LossFn, **kwargs: Any
) -> MetaGradientEstimator:
  """The estimator called ``name`` (a key of ``ESTIMATORS``) built with ``kwargs``.

  ``meta_sgd`` trains ``MetaSGDParams`` (see ``jmeta.meta_sgd_params``) and ``maml++``
  ``MAMLPlusPlusParams`` (see ``jmeta.maml_plus_plus_params``), the others
  the model's params; ``imaml`` also needs ``regularization``.
  """
  if name not in ESTIMATORS:
    raise ValueError(
      f'unknown estimator {name!r}; expected one of {sorted(ESTIMATORS)}.'
    )
  return ESTIMATORS[name](model, loss_fn, **kwargs)
