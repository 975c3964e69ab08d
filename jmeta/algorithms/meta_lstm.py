"""The meta-LSTM few-shot learner (Ravi & Larochelle, 2017).

The meta-parameters are ``MetaParams(init, rule)``: the learner's initial params
theta_0 (the LSTM's initial cell state c_0) and the meta-LSTM's weights
(``jmeta.learned_optimizers.meta_lstm_rule``). Task i adapts by

  theta_t = f_t * theta_{t-1} - i_t * grad L_i^support(theta_{t-1}),

``inner_steps`` times, and the meta-gradient is that of L_i^query(theta_T) with
respect to both. By default the paper's estimator: the support gradient and loss
fed to the meta-LSTM are constants (first order, their Sec. 3.2), the path through
the cell state and the gates being kept; ``first_order=False`` differentiates
through them too (second order).

Batch norm: the model's own mode (``jmeta.conv4``: transductive, batch statistics of
each call at training and at test, the paper's choice), with no running averages.
As in the reference code, the batch-norm scale and offset are ordinary coordinates
of theta: learned in theta_0 and updated by the rule. The reference's meta-test
normalises the queries with running averages reset each episode and collected over
its support passes (momentum 0.9), not with the queries' own statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jmeta.estimators import first_order as first_order_estimator
from jmeta.estimators import second_order
from jmeta.gradient_learner import (
  GradientOptions,
  gradient_learner,
  with_gradient_options,
)
from jmeta.inner_loop import LossFn
from jmeta.learned_optimizers.meta_lstm import meta_lstm_rule
from jmeta.learner import MetaLearner
from jmeta.models.base import Model
from jmeta.validation import check_bool

if TYPE_CHECKING:
  from typing_extensions import Unpack


@with_gradient_options
def meta_lstm(
  model: Model,
  loss_fn: LossFn,
  *,
  inner_steps: int,
  hidden_size: int = 20,
  first_order: bool = True,
  seed: int = 0,
  forget_bias: tuple[float, float] = (4.0, 5.0),
  input_bias: tuple[float, float] = (-5.0, -4.0),
  **options: Unpack[GradientOptions],
) -> MetaLearner:
  """The meta-LSTM learner: ``inner_steps`` updates of ``meta_lstm_rule``.

  ``hidden_size``, ``forget_bias`` and ``input_bias`` (ranges of the uniform
  initial gate biases) and ``seed`` (of the rule's initial weights) configure the
  rule; the defaults are the reference code's. ``options`` are
  ``GradientOptions``; at test ``predict`` runs ``test_steps`` (default
  ``inner_steps``) updates of the same rule.

  Example::

    learner = jmeta.meta_lstm(model, jmeta.losses.cross_entropy, inner_steps=12)
    trainer = jmeta.make_meta_trainer(learner, optax.adam(1e-3))
    state = trainer.init(learner.init(params))
  """
  check_bool(first_order, 'first_order')
  return gradient_learner(
    model,
    loss_fn,
    rule=meta_lstm_rule(
      hidden_size, seed=seed, forget_bias=forget_bias, input_bias=input_bias
    ),
    estimator=first_order_estimator() if first_order else second_order(),
    inner_steps=inner_steps,
    name='meta_lstm',
    **options,
  )


# The name under which jmeta.make_learner finds this factory.
LEARNERS = {'meta_lstm': meta_lstm}
