#!/usr/bin/env bash
# One call of the device tool: benchmarks/device_suite.sh, then the registered
# full-protocol MAML 5-way 1-shot Omniglot run on the GPU (started, or continued from
# the checkpoint in its workdir) until DEADLINE_S seconds after the call began. The
# run is stopped with SIGTERM, which exits after any checkpoint being written, and
# its workdir comes back as $OUT/<run>.tgz (in 15 MiB parts when larger): unpack it
# over the repository here and commit it, checkpoint included, so that the next call
# continues it.
#
#   OUT=/empty/dir DEADLINE_S=560 bash benchmarks/device_session.sh
#
# The device machine reaches no registry and no ../shared, so the call carries
# .device/ (ignored by .git/info/exclude): omniglot/ with the two Omniglot archives,
# tfds/ with jmeta's prepared arrays (jmeta_omniglot_arrays/, so no TFDS is needed
# there), and whl/ with the pure-Python wheels its image lacks (ml_collections,
# tensorboardX). To make it (the compressed npz keeps the call under its 64 MiB):
#
#   mkdir -p .device/omniglot .device/tfds/jmeta_omniglot_arrays/1.0.0 .device/whl
#   echo /.device/ >>.git/info/exclude
#   cp "$JMETA_OMNIGLOT_DIR"/images_{background,evaluation}.zip .device/omniglot/
#   python -c 'import numpy as np; z = np.load(SRC); np.savez_compressed(DST, **z)'
#     (SRC: ~/tensorflow_datasets/jmeta_omniglot_arrays/1.0.0/omniglot28_archives.npz,
#      DST: the same path under .device/tfds)
#   pip download --no-deps --only-binary=:all: -d .device/whl \
#     ml_collections==1.1.0 tensorboardX==2.6.5
#
#   SKIP_SUITE=1   continue the run only (it takes the whole DEADLINE_S)
#   SECOND_RUN=1   RUN is the first run of ProtoNet's reference protocol: once it has
#                  stopped, register its second run (experiments.omniglot.second_run)
#                  and train that too in the time left; both workdirs come back
#   RUN            the run's workdir (default results/omniglot/full/maml_5w1s_h200),
#                  or several, separated by spaces: trained in that order (each with
#                  its second run under SECOND_RUN=1, for a workdir named *_select*)
#                  until the deadline; a run cut short ends the list
#   PYTHON         the interpreter (default python3)
set -uo pipefail
start=$SECONDS
out=${OUT:?set OUT to an empty folder}
deadline=${DEADLINE_S:-560}
run=${RUN:-results/omniglot/full/maml_5w1s_h200}
py=${PYTHON:-python3}
data=$PWD/.device
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --target /tmp/jmeta_site "$data"/whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/jmeta_site PYTHONUNBUFFERED=1
export JMETA_OMNIGLOT_DIR=$data/omniglot JMETA_TFDS_DATA_DIR=$data/tfds
if [ "${SKIP_SUITE:-0}" != 1 ]; then
  bash benchmarks/device_suite.sh
fi
# Trains the registered run in workdir $1 until the deadline, with the command its
# RUN.json records, so that the run is the registered one.
train_until_deadline() {
  local workdir=$1 command left rc
  if compgen -G "$workdir/test_step*.json" >/dev/null; then
    echo "$workdir has finished: $(ls "$workdir"/test_step*.json)"
    return 0
  fi
  command=$("$py" -c 'import json, shlex, sys; print(shlex.join(json.load(open(sys.argv[1]))["command"]))' "$workdir/RUN.json") || return 1
  command=${command/#python /$py }
  left=$((deadline - (SECONDS - start) - 30))
  if [ "$left" -le 60 ]; then
    echo "$(date -u) ${left}s left: $workdir not started"
    return 1
  fi
  echo "$(date -u) running for at most ${left}s: $command"
  # Its output goes into the workdir's log.txt too, as `experiments.runs continue`
  # does, so that it comes back with the workdir.
  echo "# continued by benchmarks/device_session.sh at $(date -u -Iseconds)" >>"$workdir/log.txt"
  # shellcheck disable=SC2086
  timeout -s TERM -k 20 "$left" $command 2>&1 | tee -a "$workdir/log.txt"
  rc=${PIPESTATUS[0]}
  echo "$(date -u) exit $rc (124: stopped at the deadline, after any checkpoint being written)"
  return "$rc"
}
# Trains run $1, then its second run where SECOND_RUN=1 asks for it; returns the
# first non-zero exit. Appends every workdir it touched to `workdirs`.
train_with_second_run() {
  local first=$1 second rc
  workdirs+=("$first")
  train_until_deadline "$first"
  rc=$?
  if [ "$rc" != 0 ] || [ "${SECOND_RUN:-0}" != 1 ]; then
    return "$rc"
  fi
  # No second run for a first run whose name lacks _select (second_run says so).
  second=$("$py" -m experiments.omniglot.second_run --print-workdir "$first") || return 0
  if [ -f "$second/RUN.json" ] || "$py" -m experiments.omniglot.second_run "$first"; then
    workdirs+=("$second")
    train_until_deadline "$second"
  fi
}
workdirs=()
read -ra runs <<<"$run"
for workdir in "${runs[@]}"; do
  train_with_second_run "$workdir" || break
done
# The device tool brings back no file over 16 MiB, so a larger archive comes back
# in 15 MiB parts: `cat NAME.tgz.part* >NAME.tgz` puts it together again.
for workdir in "${workdirs[@]}"; do
  tgz="$out/$(basename "$workdir").tgz"
  tar czf "$tgz" "$workdir"
  if [ "$(stat -c %s "$tgz")" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d "$tgz" "$tgz.part" && rm "$tgz"
  fi
done
ls -la "$out"
