"""Why a trained NTM fails on long copies: where its read head lands when the copy
phase starts.

To copy, the read head must move, at the delimiter, to the slot where the first
vector was written (a content lookup), then shift one slot a step. For each length
this probe runs ``--sequences`` fresh sequences through a finished run's NTM and
records whether the read weighting at the delimiter step peaks at that slot (the
write weighting's peak when the first vector was written), the weight it puts
there, and the wrong bits of the copies whose jump hit and of those whose jump
missed, and the share of input steps at which the write head moved one slot.
Writes ``probe.json`` and ``probe.md`` into the run's folder::

  python -m experiments.copy_task.probe results/copy_task/ntm_rerun
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from experiments.common.run_info import run_info
from experiments.copy_task import sequences, train

DEFAULT_LENGTHS = (10, 20, 30, 40, 50, 60, 70, 80, 100)


def jump_statistics(
  config, model, params, lengths, num_sequences: int, seed: int
) -> list[dict]:
  """One row per length: the share of jumps that hit, the read weight on the first
  vector's slot, and the mean wrong bits of copies whose jump hit or missed."""
  if config.model != 'ntm':
    raise ValueError(
      f"the probe reads the NTM's head weightings; this run's model is "
      f'{config.model!r}.'
    )

  @jax.jit
  def run(params, inputs):
    def body(state, x):
      state, out = model.step(params, state, x)
      access = state.access
      return state, (out, access.write_weights[0], access.read_weights[0])

    return jax.lax.scan(body, model.initial_state(params), inputs)[1]

  rows = []
  for length in lengths:
    batch = sequences.sample_batch(
      jax.random.fold_in(jax.random.key(seed), length),
      num_sequences,
      length,
      length,
      config.bits,
    )
    outs, writes, reads = (
      np.asarray(a) for a in jax.vmap(run, (None, 0))(params, batch.inputs)
    )
    # Step 1 shows the first vector; step length + 1 is the delimiter.
    first_slot = writes[:, 1].argmax(-1)
    at_delimiter = reads[:, length + 1]
    hit = at_delimiter.argmax(-1) == first_slot
    wrong = np.asarray(
      sequences.bit_errors(outs, np.asarray(batch.targets), batch.mask)
    )
    # How far the write head's peak moves between the input vectors.
    peaks = writes[:, 1 : length + 1].argmax(-1)
    moves = np.diff(peaks, axis=1) % writes.shape[-1]
    rows.append(
      {
        'length': length,
        'sequences': num_sequences,
        'write_moves_of_one_slot': float((moves == 1).mean()) if length > 1 else None,
        'jump_hits': float(hit.mean()),
        'weight_on_first_slot': float(
          np.take_along_axis(at_delimiter, first_slot[:, None], 1).mean()
        ),
        'wrong_bits_when_hit': float(wrong[hit].mean()) if hit.any() else None,
        'wrong_bits_when_missed': float(wrong[~hit].mean()) if (~hit).any() else None,
      }
    )
  return rows


def table(rows: list[dict]) -> str:
  def cell(v):
    return '–' if v is None else f'{v:.2f}'

  lines = [
    '| length | jumps that hit the first slot | read weight there | wrong bits, '
    'jump hit | wrong bits, jump missed |',
    '| --- | --- | --- | --- | --- |',
  ]
  for r in rows:
    lines.append(
      f'| {r["length"]} | {r["jump_hits"]:.2f} | {r["weight_on_first_slot"]:.3f} | '
      f'{cell(r["wrong_bits_when_hit"])} | {cell(r["wrong_bits_when_missed"])} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('--lengths', default=','.join(map(str, DEFAULT_LENGTHS)))
  parser.add_argument('--sequences', type=int, default=100)
  parser.add_argument('--seed', type=int, default=2_000_003)
  args = parser.parse_args(argv)
  workdir = pathlib.Path(args.workdir)
  config, model, params = train.load_trained(workdir)
  lengths = [int(n) for n in args.lengths.split(',')]
  rows = jump_statistics(config, model, params, lengths, args.sequences, args.seed)
  (workdir / 'probe.json').write_text(
    json.dumps({'run': run_info(), 'args': vars(args), 'rows': rows}, indent=2)
  )
  (workdir / 'probe.md').write_text(table(rows))
  print(table(rows), end='')


if __name__ == '__main__':
  main()
