"""Re-tests a trained Omniglot workdir with other test-time inner loops.

  python -m experiments.omniglot.probe --workdir=results/omniglot/full/fomaml_5w1s \
      --inner_steps=1,3,10 --inner_learning_rates=2.0,0.4

Reads the workdir's ``config.json`` and its latest checkpoint and writes
``probe_step<N>.json``: for each (test-time inner steps, inner learning rate) the
accuracy on the same fixed test episodes as ``test_step<N>.json`` (so the row of the
config's own setting repeats that file's number), and each parameter leaf's RMS and
largest magnitude. With ``--compare_batches=B`` it also compares, on B training
batches at the checkpoint, the first-order meta-gradient with exact second-order
MAML's (same inner loop): global and per-layer cosines and the norm ratio. It answers "is the learned initialisation or the test-time
adaptation at fault?" for gradient-based learners, whose adaptation the config sets.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
from absl import app, flags, logging


def define_flags() -> None:
  """This command's flags; defined when it runs, not on import, so that importing
  ``probe`` beside another command's flags (e.g. ``workdir``) cannot collide."""
  flags.DEFINE_string('workdir', None, 'A trained Omniglot workdir.', required=True)
  flags.DEFINE_list('inner_steps', ['1', '3', '10'], 'Test-time inner steps.')
  flags.DEFINE_list(
    'inner_learning_rates', [], "Inner learning rates (default: the config's)."
  )
  flags.DEFINE_integer('episodes', 600, 'Test episodes per setting.')
  flags.DEFINE_integer(
    'compare_batches', 0, 'Training batches on which to compare FOMAML with MAML.'
  )


def leaf_stats(params) -> dict[str, dict[str, float]]:
  """``{'block_0/scale': {'rms': ..., 'max_abs': ...}, ...}`` of a params pytree."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    a = np.asarray(leaf, np.float64)
    out[name] = {
      'rms': float(np.sqrt(np.mean(a**2))),
      'max_abs': float(np.max(np.abs(a))),
    }
  return out


def first_vs_second_order(config, params, batches) -> list[dict]:
  """Per batch: cosine (global, ``layer/<name>``) and norm ratio of the first-order
  meta-gradient against exact MAML's at ``params``, with the config's inner loop."""
  import jax  # noqa: PLC0415

  import jmeta  # noqa: PLC0415
  from experiments.omniglot import learners  # noqa: PLC0415

  def estimator(first_order: bool):
    setting = config.copy_and_resolve_references()
    setting.algorithm = 'fomaml' if first_order else 'maml'
    return learners.make_learner(setting).estimator

  maml, fomaml = estimator(False), estimator(True)

  @jax.jit
  def compare(batch):
    ref = maml.meta_gradient(params, batch).grads
    g = fomaml.meta_gradient(params, batch).grads
    return {
      'cosine': jmeta.tree_cosine(g, ref),
      'norm_ratio': jmeta.tree_norm_ratio(g, ref),
      **{f'layer/{k}': v for k, v in jmeta.layer_cosines(g, ref).items()},
    }

  return [{k: float(v) for k, v in jax.device_get(compare(b)).items()} for b in batches]


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its ``config.json``)."""
  return ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))


def latest_checkpoint(workdir: pathlib.Path, config, out_prefix: str):
  """(checkpointer, step, output path) of a trained workdir's latest checkpoint;
  refuses a workdir without one, or whose output exists."""
  from experiments.common.checkpoint import Checkpointer  # noqa: PLC0415

  checkpointer = Checkpointer(workdir, config.to_dict())
  step = checkpointer.latest_step()
  out = workdir / f'{out_prefix}_step{step}.json'
  if step is None or out.exists():
    checkpointer.close()
    if step is None:
      raise app.UsageError(f'{workdir} has no checkpoint to probe.')
    raise app.UsageError(f'{out} exists; move it away to probe again.')
  return checkpointer, step, out


def restore_params(config, checkpointer, step: int, sampler):
  """The trained params at ``step``, restored onto one device (the state's template
  built from one episode of ``sampler``); closes ``checkpointer``."""
  import jax  # noqa: PLC0415

  import jmeta  # noqa: PLC0415
  from experiments.omniglot import learners, train  # noqa: PLC0415

  learner = learners.make_learner(config)
  probe_inputs = sampler.sample(jax.random.key(0), 1).support_inputs[0]
  template = jmeta.make_meta_trainer(
    learner.estimator, train.outer_optimizer(config)
  ).init(learner.init(jax.random.key(0), probe_inputs))
  params = checkpointer.restore(template, step).params
  checkpointer.close()
  return params


def probe(
  workdir: pathlib.Path, steps, rates, episodes: int, compare_batches: int = 0
) -> dict:
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  import jmeta  # noqa: PLC0415
  from experiments.common.run_info import run_info  # noqa: PLC0415
  from experiments.omniglot import learners, train  # noqa: PLC0415
  from jmeta.data import omniglot  # noqa: PLC0415

  config = read_config(workdir)
  if config.algorithm not in learners.GRADIENT_ALGORITHMS:
    raise app.UsageError(
      f'{workdir} trained {config.algorithm!r}, a metric learner: it has no '
      'test-time inner loop to vary (experiments.omniglot.probe_batch_norm '
      'varies its batch norm).'
    )
  checkpointer, step, out = latest_checkpoint(workdir, config, 'probe')

  bank = jnp.asarray(omniglot.load_split(config.data.protocol, 'test'))
  sampler = train.make_sampler(config, bank, n_way=config.data.n_way)
  params = restore_params(config, checkpointer, step, sampler)

  rows = []
  for rate in rates or [config.inner_learning_rate]:
    for n in steps:
      setting = config.copy_and_resolve_references()
      setting.eval.inner_steps, setting.inner_learning_rate = n, rate
      evaluate = train.make_evaluator(
        setting, learners.make_learner(setting), sampler, config.data.n_way
      )
      acc = evaluate(params, bank, episodes, config.eval.seed + 1, desc='probe')[
        'accuracy'
      ]
      mean, ci = jmeta.mean_confidence_interval(acc)
      rows.append(
        {
          'inner_steps': n,
          'inner_learning_rate': rate,
          'accuracy': float(mean),
          'ci95': float(ci),
        }
      )
      logging.info('%d steps at %g: %.4f +- %.4f', n, rate, mean, ci)
  if compare_batches:
    train_bank = jnp.asarray(omniglot.load_split(config.data.protocol, 'train'))
    train_sampler = train.make_sampler(config, train_bank, train=True)
    # Keys apart from the run's own training stream (fold_in(seed, 1)).
    batches = [
      train_sampler.sample(jax.random.key(10_000 + i), config.meta_batch_size)
      for i in range(compare_batches)
    ]
    compared = first_vs_second_order(config, params, batches)
  result = {
    'run': run_info(),
    'step': step,
    'episodes': episodes,
    'test': rows,
    'params': leaf_stats(params),
  }
  if compare_batches:
    result['first_vs_second_order'] = compared
  out.write_text(json.dumps(result, indent=2))
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  import jax  # noqa: PLC0415

  # The checkpoint restores onto one device whatever it was trained on.
  jax.config.update('jax_num_cpu_devices', 1)
  f = flags.FLAGS
  probe(
    pathlib.Path(f.workdir),
    [int(s) for s in f.inner_steps],
    [float(r) for r in f.inner_learning_rates],
    f.episodes,
    f.compare_batches,
  )


if __name__ == '__main__':
  define_flags()
  app.run(main)
