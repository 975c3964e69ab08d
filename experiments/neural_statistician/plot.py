"""The grid of conditioning sets and generated samples, laid out like the paper's
figure of Omniglot samples."""

from __future__ import annotations

import numpy as np


def plot_samples(grid: dict, path):
  """One row per character: its conditioning images, a gap, then the samples
  (pixel probabilities, black on white). Returns the matplotlib Figure."""
  from matplotlib.figure import Figure

  conditioning, samples = grid['conditioning'], grid['samples']
  rows, n_cond = conditioning.shape[:2]
  n_samp = samples.shape[1]
  cols = n_cond + 1 + n_samp
  fig = Figure(figsize=(0.5 * cols, 0.5 * rows + 0.5))
  axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
  for r in range(rows):
    images = [*conditioning[r], None, *samples[r]]
    for c, image in enumerate(images):
      ax = axes[r, c]
      ax.set_axis_off()
      if image is not None:
        ax.imshow(1.0 - image[..., 0], cmap='gray', vmin=0, vmax=1)
  fig.suptitle(
    f'left: {n_cond} drawings of a test character; right: {n_samp} samples', fontsize=8
  )
  fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, bottom=0.01)
  fig.savefig(path, dpi=110)
  return fig
