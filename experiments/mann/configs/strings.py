"""Santoro et al.'s Table 2: 15 classes per episode with five-character string labels.

  python -m experiments.mann.main --workdir=... \
      --config=experiments/mann/configs/strings.py:mann   # or :lstm

Each class of an episode gets a distinct random string of 5 characters from
'abcde' (3,125 strings); the model reads the previous step's string as 5
concatenated one-hots (25 inputs) and predicts it with 5 softmaxes of 5, trained on
the sum of their cross-entropies; an answer is right only if all 5 characters are.
Everything else is ``default.py`` (MANN) or ``lstm.py`` (the LSTM baseline).
``--config.data.num_classes=5`` gives Table 2's 5-class rows.

Each class is shown 10 times, 150 steps an episode, as jmeta's issue for this
experiment sets the protocol. A possible deviation: secondary accounts of the
paper's Figure 2 give these runs episodes of 100 steps with the class of each step
drawn at random; the paper's own text could not be read where this was written.
"""

import ml_collections

from experiments.mann.configs import default, lstm

MODELS = {'mann': default, 'lstm': lstm}


def get_config(arg: str = 'mann') -> ml_collections.ConfigDict:
  if arg not in MODELS:
    raise ValueError(f'config argument must be one of {tuple(MODELS)}, got {arg!r}.')
  config = MODELS[arg].get_config()
  config.data.num_classes = 15
  config.data.labels = 'string'
  return config
