"""The neural statistician (Edwards & Storkey, 2017): a VAE over sets of images.

A statistic network pools a set of images into a context latent c, and a VAE with a
hierarchy of latents z_1..z_L models each image given c. From a few images of an
unseen class it generates new ones (``sample``) and classifies queries by the
posterior over c (``classify``).

* ``networks``: the Flax Linen networks (shared conv encoder, statistic network,
  Gaussian heads, Bernoulli decoder).
* ``model``: ``neural_statistician(...)``, a ``NeuralStatistician`` of pure
  functions of a params dict, and the lower bound's parts as functions.
* ``learner``: ``statistician_learner`` makes it a ``jmeta.MetaLearner`` on
  N-way episodes (each class a set; ``predict`` gives KL logits).

Example::

  model = neural_statistician()
  params = model.init(jax.random.key(0), jnp.zeros((5, 28, 28, 1)))
  loss, (metrics, stats) = model.loss(params, sets, jax.random.key(1), alpha=1.0)
  logits = model.classify(params, support, support_labels, query, num_classes=5)
"""

from jmeta.neural_statistician import networks
from jmeta.neural_statistician.learner import class_sets, statistician_learner
from jmeta.neural_statistician.model import (
  ElboTerms,
  Gaussian,
  NeuralStatistician,
  dynamic_binarization,
  kl_logits,
  neural_statistician,
  standard_normal_kl,
  weighted_loss,
)

__all__ = [
  'ElboTerms',
  'Gaussian',
  'NeuralStatistician',
  'class_sets',
  'dynamic_binarization',
  'kl_logits',
  'networks',
  'neural_statistician',
  'standard_normal_kl',
  'statistician_learner',
  'weighted_loss',
]
