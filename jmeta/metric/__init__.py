"""Metric-based meta-learners on the shared model interface."""

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
from jmeta.metric.protonet import prototypical

__all__ = [
  'MetricLearner',
  'class_means',
  'classification_loss',
  'cosine_similarities',
  'embed_episode',
  'evaluate_metric',
  'metric_estimator',
  'prototypical',
  'squared_distances',
  'with_embedding_loss',
]
