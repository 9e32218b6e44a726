#!/usr/bin/env bash
# bench-all.sh - `npm run bench`: the standalone benchmark (scripts/bench.sh: direct
# Redis, nutcracker and aster-proxy over three redis-servers), then the cluster-mode
# one (scripts/bench-cluster.sh: aster-proxy in front of a 3-master Redis Cluster
# against redis-benchmark going straight to the cluster), with the same options.
#
# Usage: npm run bench [-- OPTIONS]      or      bash scripts/bench-all.sh [OPTIONS]
#   -m MODE      standalone, cluster or all                 [all]
#   -r -n -P -c -t -q   passed to both (rounds, requests, depths, connections, tests,
#                quick look; see bash scripts/bench.sh -h and bash scripts/bench-cluster.sh -h)
#   -T TARGETS   passed on with -m standalone or -m cluster only (their targets differ)
#   -o FILE      report file; with -m all the standalone report goes to FILE and the
#                cluster one to FILE with "-cluster" before its extension ("-": none)
#   -h           this help
# Each script starts and stops its own processes (by PID) and saves its report
# under .run/ unless -o says otherwise. Ctrl-C or SIGTERM stops the running one,
# which cleans up after itself.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
die() { echo "bench: $*" >&2; exit 1; }

MODE=all OUT="" TARGETS="" common=()
while getopts "m:r:n:P:c:t:T:qo:h" opt; do
  case $opt in
    m) MODE=$OPTARG ;;
    r | n | P | c | t) common+=("-$opt" "$OPTARG") ;;
    q) common+=(-q) ;;
    T) TARGETS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    h) usage 0 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
case $MODE in standalone | cluster | all) ;; *) die "unknown mode '$MODE' (standalone, cluster, all)" ;; esac
[[ -z $TARGETS || $MODE != all ]] || die "-T names the targets of one mode: add -m standalone or -m cluster"

# run SCRIPT ARGS...: in the background, waited for; INT / TERM are passed on to it as
# TERM (a background job of a script ignores SIGINT), and its cleanup is waited for.
child=""
stop() { [[ -z $child ]] || { kill -TERM "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; }; exit "$1"; }
trap 'stop 130' INT
trap 'stop 143' TERM
run() {
  local rc=0
  bash "$@" &
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# out_args OUTFILE: the -o option for one script
out_args() { [[ -z $1 ]] || printf '%s\n' -o "$1"; }
std_out=$OUT cl_out=$OUT
if [[ $MODE == all && -n $OUT && $OUT != - ]]; then
  base=$(basename -- "$OUT")
  if [[ $base == *.* ]]; then cl_out=${OUT%.*}-cluster.${OUT##*.}; else cl_out=$OUT-cluster; fi
fi
targets=()
[[ -z $TARGETS ]] || targets=(-T "$TARGETS")

if [[ $MODE == standalone || $MODE == all ]]; then
  mapfile -t o < <(out_args "$std_out")
  run scripts/bench.sh "${common[@]}" "${targets[@]}" "${o[@]}"
fi
if [[ $MODE == cluster || $MODE == all ]]; then
  mapfile -t o < <(out_args "$cl_out")
  run scripts/bench-cluster.sh "${common[@]}" "${targets[@]}" "${o[@]}"
fi
