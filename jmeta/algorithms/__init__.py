"""One module per algorithm; each lists its factories in a module-level ``LEARNERS``.

Every factory takes ``(model, loss_fn, **options)`` and returns a
``jmeta.MetaLearner``. This package collects the ``LEARNERS`` of every module in it,
so adding an algorithm is adding one file here (``jmeta.make_learner`` then finds
it by name).
"""

import importlib
import pkgutil

LEARNERS = {}
for _info in pkgutil.iter_modules(__path__):
  _module = importlib.import_module(f'{__name__}.{_info.name}')
  for _name, _factory in getattr(_module, 'LEARNERS', {}).items():
    if _name in LEARNERS:
      raise ImportError(f'two algorithm modules register the learner {_name!r}.')
    LEARNERS[_name] = _factory
