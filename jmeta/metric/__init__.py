"""Metric-based meta-learners on the shared model interface.

Prototypical, Matching, Relation and Siamese networks are ``MetricLearner``s: pure
per-task functions that ``metric_estimator`` turns into a meta-gradient estimator
for ``jmeta.make_meta_trainer``. Meta Networks (``meta_networks``) share that
shape: the support set enters through the episode loss, as fast weights read from a
memory by cosine attention. So does the MANN of ``jmeta.memory`` (``mann_learner``):
the support set is a sequence written to its memory, each query one step after it.
``jmeta.metric.losses`` holds the contrastive,
triplet (batch-hard, semi-hard) and center losses, which ``with_embedding_loss``
adds to any learner.
"""

from jmeta.metric import losses
from jmeta.metric.base import (
  MetricLearner,
  class_means,
  classification_loss,
  cosine_similarities,
  embed_episode,
  evaluate_metric,
  metric_estimator,
  squared_distances,
  with_embedding_loss,
)
from jmeta.metric.losses import (
  batch_hard_triplet_loss,
  batch_semi_hard_triplet_loss,
  center_loss,
  contrastive_loss,
  pairwise_contrastive_loss,
  triplet_loss,
)
from jmeta.metric.mann import mann_learner
from jmeta.metric.matching import matching
from jmeta.metric.meta_networks import meta_networks
from jmeta.metric.protonet import prototypical
from jmeta.metric.relation import relation_network
from jmeta.metric.siamese import SIAMESE_LOSSES, siamese

# Every metric learner by name: ``METRIC_LEARNERS[name](model, **options)``.
METRIC_LEARNERS = {
  'protonet': prototypical,
  'matching': matching,
  'meta_networks': meta_networks,
  'mann': mann_learner,
  'relation': relation_network,
  'siamese': siamese,
}

__all__ = [
  'METRIC_LEARNERS',
  'MetricLearner',
  'SIAMESE_LOSSES',
  'batch_hard_triplet_loss',
  'batch_semi_hard_triplet_loss',
  'center_loss',
  'class_means',
  'classification_loss',
  'contrastive_loss',
  'cosine_similarities',
  'embed_episode',
  'evaluate_metric',
  'losses',
  'mann_learner',
  'matching',
  'meta_networks',
  'metric_estimator',
  'pairwise_contrastive_loss',
  'prototypical',
  'relation_network',
  'siamese',
  'squared_distances',
  'triplet_loss',
  'with_embedding_loss',
]
