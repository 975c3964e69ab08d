#!/bin/bash
# The README's CPU-budget run, from the repository root:
#   bash experiments/neural_statistician/run_cpu_budget.sh
# It writes results/neural_statistician/cpu_budget/ (log.txt holds its output); a
# stopped run resumes from its checkpoint when the script is run again.
set -u
workdir=results/neural_statistician/cpu_budget
[ -e "$workdir/results.json" ] && exit 0
mkdir -p "$workdir"
nice -n 19 python -m experiments.neural_statistician.main \
  --workdir="$workdir" --config.num_iterations=3000 >>"$workdir/log.txt" 2>&1
