"""Re-tests a trained metric learner's Omniglot workdir with other batch-norm statistics.

  python -m experiments.omniglot.probe_batch_norm \
      --workdir=results/omniglot/full/protonet_5w5s_trainval_gpu

jmeta's metric configs normalise every episode with its support set's statistics
(``model.batch_norm='support'``). ProtoNet's reference code trains with the
statistics of support and query together and tests in PyTorch's eval mode, with
running averages of the training batches' statistics. This command tests the
workdir's latest checkpoint on the same fixed test episodes as ``test_step<N>.json``
(every way it tested), with the statistics of:

- ``support``: the episode's support set, as trained and tested (on the same
  backend, it repeats ``test_step<N>.json``);
- ``transductive``: the episode's support and query sets together;
- ``population``: ``--reference_images`` images of fixed training episodes at these
  parameters (``jmeta.models.population_batch_norm``), what running averages
  approach once training has settled.

It writes ``batch_norm_probe_step<N>.json`` beside the checkpoint.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags, logging

MODES = ('support', 'transductive', 'population')


def define_flags() -> None:
  flags.DEFINE_string('workdir', None, 'A trained Omniglot workdir.', required=True)
  flags.DEFINE_integer(
    'reference_images', 1000, 'Training images whose statistics population uses.'
  )
  flags.DEFINE_integer('episodes', 1000, 'Test episodes per way and mode.')
  flags.DEFINE_integer('episodes_per_call', 50, 'Test episodes per compiled call.')


def reference_images(config, train_bank, count: int):
  """``count`` images of training episodes drawn as the run trained (with their
  rotations), from keys apart from the run's own training stream."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from experiments.omniglot import train  # noqa: PLC0415

  sampler = train.make_sampler(config, train_bank, train=True)
  images, i = [], 0
  while sum(x.shape[0] for x in images) < count:
    batch = sampler.sample(jax.random.key(20_000 + i), 1)
    images += [batch.support_inputs[0], batch.query_inputs[0]]
    i += 1
  return jnp.concatenate(images)[:count]


def episode_accuracies(learner, params, sampler, bank, keys, per_call: int):
  """Each test episode's query accuracy under ``learner`` (a ``MetricLearner``)."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  n_way = sampler.num_classes

  def one(key):
    b = jax.tree.map(lambda x: x[0], sampler.sample_from(bank, key, 1))
    logits = learner.logits(
      params, b.support_inputs, b.support_targets, b.query_inputs, n_way
    )
    return jnp.mean(jnp.argmax(logits, -1) == b.query_targets)

  run = jax.jit(lambda ks: jax.lax.map(one, ks))
  return np.concatenate(
    [np.asarray(run(keys[i : i + per_call])) for i in range(0, len(keys), per_call)]
  )


def probe(workdir: pathlib.Path, num_reference: int, episodes: int, per_call: int):
  import jax.numpy as jnp  # noqa: PLC0415

  import jmeta  # noqa: PLC0415
  from experiments.common.run_info import run_info  # noqa: PLC0415
  from experiments.omniglot import learners, train  # noqa: PLC0415
  from experiments.omniglot.probe import (  # noqa: PLC0415
    latest_checkpoint,
    read_config,
    restore_params,
  )
  from jmeta.data import episodes as episode_data  # noqa: PLC0415
  from jmeta.data import omniglot  # noqa: PLC0415

  config = read_config(workdir)
  if config.algorithm in learners.GRADIENT_ALGORITHMS or not learners.takes_option(
    config, 'model'
  ):
    raise app.UsageError(
      f'{workdir} trained {config.algorithm!r}: this probe needs a metric learner '
      'that embeds with the Conv4 (protonet, matching, siamese).'
    )
  checkpointer, step, out = latest_checkpoint(workdir, config, 'batch_norm_probe')
  banks = {
    s: jnp.asarray(omniglot.load_split(config.data.protocol, s))
    for s in ('train', 'val', 'test')
  }
  ways = train.test_ways(config)
  samplers = {w: train.make_sampler(config, banks['test'], n_way=w) for w in ways}
  params = restore_params(config, checkpointer, step, samplers[ways[0]])
  reference = reference_images(
    config, train.training_bank(config, banks), num_reference
  )
  keys = episode_data.evaluation_keys(config.eval.seed + 1, episodes)
  rows = []
  for way in ways:
    for mode in MODES:
      setting = config.copy_and_resolve_references()
      model = learners.conv4(config, 0)
      if mode == 'population':
        model, setting.model.batch_norm = (
          jmeta.models.population_batch_norm(model, reference),
          'support',
        )
      else:
        setting.model.batch_norm = mode
      learner = learners.metric_learner(setting, way, model=model)
      acc = episode_accuracies(
        learner, params, samplers[way], banks['test'], keys, per_call
      )
      mean, ci = jmeta.mean_confidence_interval(acc)
      rows.append(
        {'n_way': way, 'batch_norm': mode, 'accuracy': float(mean), 'ci95': float(ci)}
      )
      logging.info('%d-way, %s: %.4f +- %.4f', way, mode, mean, ci)
  result = {
    'run': run_info(),
    'step': step,
    'episodes': episodes,
    'reference_images': num_reference,
    'trained_batch_norm': config.model.batch_norm,
    'test': rows,
  }
  out.write_text(json.dumps(result, indent=2))
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax  # noqa: PLC0415

  jax.config.update('jax_num_cpu_devices', 1)
  f = flags.FLAGS
  probe(pathlib.Path(f.workdir), f.reference_images, f.episodes, f.episodes_per_call)


if __name__ == '__main__':
  define_flags()
  app.run(main)
