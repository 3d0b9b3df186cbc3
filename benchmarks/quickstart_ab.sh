#!/bin/bash
# The quickstart's wall time at two commits, alternating (before, after, before, ...), a fresh store each run:
#   benchmarks/quickstart_ab.sh BEFORE AFTER [ROUNDS=3] [OUT=quickstart_ab]
# Each commit is checked out as a git worktree under OUT/ and run with this checkout's venv (PYTHONPATH wins over
# the editable install). Ray starts its workers at niceness 15: every process under a run's driver is reniced to 0
# each second. Run it as root with `echo -20 > /proc/self/autogroup` first if anything else shares the machine
# (niceness only orders processes within one autogroup). Prints and appends to OUT/times.txt: side, round, wall s,
# and the latent-metric phase (first metric job started to last finished) read off the run's log.
set -u
before=$1; after=$2; rounds=${3:-3}; out=$(realpath -m "${4:-quickstart_ab}")
repo=$(git rev-parse --show-toplevel); python=$repo/.venv/bin/python
mkdir -p "$out"
for side in before after; do
  [ -d "$out/$side" ] || git -C "$repo" worktree add --detach "$out/$side" "${!side}" >/dev/null
done
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
for i in $(seq "$rounds"); do
  for side in before after; do
    (cd "$out/$side" && rm -rf studies)
    log=$out/$side-$i.log
    start=$(date +%s.%N)
    (cd "$out/$side" && PYTHONPATH=$out/$side exec "$python" -m raysweep.cli run experiments/quickstart.yaml) > "$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
      for p in $(descendants "$pid"); do renice -n 0 -p "$p" >/dev/null 2>&1; done
      sleep 1
    done
    wait "$pid"; rc=$?
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    phase=$(grep -E '\(latent_metrics' "$log" | sed -E 's/^\[\+([0-9:]+)\].*/\1/' \
            | awk -F: '{s=$1*3600+$2*60+$3; if(NR==1)a=s; b=s} END{print b-a}')
    echo "$side $i rc=$rc wall_s=$wall metric_phase_s=$phase load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/times.txt"
  done
done
