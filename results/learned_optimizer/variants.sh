#!/bin/bash
# Tests the base run's learned rule on the paper's generalisation problems.
cd /work/wt-mnist
. /work/main/.venv/bin/activate
for setting in relu two_layers hidden40 steps200; do
  dir=results/learned_optimizer/mnist_$setting
  mkdir -p $dir
  cp -r results/learned_optimizer/mnist/checkpoints results/learned_optimizer/mnist/config.json \
    results/learned_optimizer/mnist/metrics.jsonl results/learned_optimizer/mnist/timing.jsonl $dir/
  nice -n 5 python -m experiments.learned_optimizer.main --workdir=$dir \
    --config=experiments/learned_optimizer/configs/mnist_cpu.py:$setting \
    --config.mnist.idx_dir=/work/shared/data/mnist > $dir/log.txt 2>&1
done
