#!/usr/bin/env bash
# bench-cluster.sh - the cluster-mode benchmark (part of `npm run bench`): aster-proxy
# (cache_type "redis_cluster") in front of a 3-master Redis Cluster, against
# redis-benchmark going straight to the cluster, on this machine.
#
# Starts, on free loopback ports: three `redis-server --cluster-enabled yes` masters
# (no replicas; each with its own scratch dir, nodes.conf and cluster bus port;
# --save "" --appendonly no), joins them with `redis-cli --cluster create ...
# --cluster-yes` and waits until CLUSTER INFO says cluster_state:ok on all three;
# then aster-proxy over them (a generated TOML: cache_type "redis_cluster", the three
# as seeds; --ip 127.0.0.1), once with thread = 1 and once with thread = 2, and waits
# until each proxy's own CLUSTER INFO says cluster_state:ok (and, with thread = 2,
# until its two workers are there). Then, at each pipeline depth, interleaved over
# several rounds (the first target rotates), the targets:
#   direct    redis-benchmark --cluster -h 127.0.0.1 -p NODE1 -c 50 -n N -r 100000 -t get,set --csv -P DEPTH
#   split     three plain redis-benchmarks at once, one per master, each with a third of
#             -c and -n and a {tag} that master owns: -p NODEi ... SET key:{tag}:__rand_int__ xxx,
#             then the same with GET; ops/s = all requests / the longest of the three runs
#   proxy-t1  redis-benchmark -h 127.0.0.1 -p PROXY -c 50 -n N -r 100000 -t get,set --csv -P DEPTH
#             to aster-proxy with thread = 1 (one process; "proxy" is another name for it)
#   proxy-t2  the same to aster-proxy with thread = 2 (a primary and two worker processes)
# and prints per test and depth, for every target: the median ops/s, for each proxy
# target its ratio to direct (a ratio of medians) against the goal (>= 0.8 at -P 1,
# >= 0.9 at -P 16) and to split, the medians of redis-benchmark's p50 and p99 latency
# (split: the largest of its three runs); per depth the CPU µs per request of each
# process (utime+stime from /proc, over each whole run, divided by its requests;
# median over rounds): the proxy (with its workers, and the children it has reaped),
# the three redis-servers together, and redis-benchmark itself. Ratios and CPU µs per
# request are what to compare: absolute ops/s move ±20-30% with other load on the
# machine.
#
# Why "split": redis-benchmark 7.0 --cluster works with -P and --csv (checked with
# 7.0.15; it prints "Cluster has 3 master nodes: ..." on stdout before the CSV, so
# only the quoted CSV rows are read), but --cluster always runs one thread per
# master (--threads cannot turn that off), and in threaded mode a test ends only at
# a 250 ms throughput tick: its run time is rounded UP to a multiple of 250 ms
# (n=100000 at -P 16 reads 396825 ops/s = 100000 / 0.252 s whatever the real time),
# and the threads that have finished spin until that tick, burning CPU the servers
# need on a small machine. "direct" is kept because it is the tool the goal names;
# "split" is the same traffic (each connection on one master, its keys in one slot
# of that master) timed to the millisecond by single-threaded redis-benchmarks.
# Through the proxy, keys spread over all slots and every node.
#
# Usage: bash scripts/bench-cluster.sh [OPTIONS]   (`npm run bench -- -m cluster [OPTIONS]`)
#   -r ROUNDS    rounds per depth                          [5]       env BENCH_ROUNDS
#   -n N[,N..]   requests per redis-benchmark test: one for all depths or one per
#                depth of -P; without -n, 300000 at depth 1 and 1500000 at deeper ones,
#                so that --cluster's 250 ms tick is small against a run
#                                                  [300000,1500000]  env BENCH_REQUESTS
#   -P DEPTHS    pipeline depths, comma-separated          [1,16]    env BENCH_PIPELINES
#   -c CLIENTS   redis-benchmark connections               [50]      env BENCH_CLIENTS
#   -t TESTS     redis-benchmark tests (split: get,set)    [get,set] env BENCH_TESTS
#   -T TARGETS   any of direct,split,proxy-t1,proxy-t2 (proxy = proxy-t1)
#                                    [direct,split,proxy,proxy-t2]  env BENCH_CLUSTER_TARGETS
#   -q           quick look: 2 rounds of 50000 requests (unless -r / -n say otherwise)
#   -o FILE      also write the report to FILE             [.run/bench-cluster-DATE.txt; "-": none]
#   -h           this help
# Env: BENCH_PROXY_ARGS (extra aster-proxy options), BENCH_KEEP=1 (keep the
# scratch dir with configs and logs).
#
# Everything runs from a scratch dir under $TMPDIR; the repo gets nothing but the
# report under .run/ (git-ignored). Exactly the processes started here are
# stopped at the end or on Ctrl-C (by PID; the proxy's workers are stopped by the
# proxy, and by PID here if they outlive it). Needs: bash, awk, redis-server,
# redis-cli, redis-benchmark (7: its CSV has the latency percentiles), node and a built proxy; `npm run bench`
# installs and builds first. A benchmark, not a test: nothing here fails on speed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST=127.0.0.1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
die() { echo "bench-cluster: $*" >&2; exit 1; }
say() { echo "bench-cluster: $*" >&2; }

ALL_TARGETS=direct,split,proxy-t1,proxy-t2
ROUNDS=${BENCH_ROUNDS:-} REQUESTS=${BENCH_REQUESTS:-}
PIPELINES=${BENCH_PIPELINES:-1,16} CLIENTS=${BENCH_CLIENTS:-50} TESTS=${BENCH_TESTS:-get,set}
TARGETS=${BENCH_CLUSTER_TARGETS:-direct,split,proxy,proxy-t2} OUT="" QUICK=0
while getopts "r:n:P:c:t:T:qo:h" opt; do
  case $opt in
    r) ROUNDS=$OPTARG ;; n) REQUESTS=$OPTARG ;; P) PIPELINES=$OPTARG ;;
    c) CLIENTS=$OPTARG ;; t) TESTS=$OPTARG ;; T) TARGETS=$OPTARG ;;
    q) QUICK=1 ;; o) OUT=$OPTARG ;; h) usage 0 ;; *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
if ((QUICK)); then ROUNDS=${ROUNDS:-2} REQUESTS=${REQUESTS:-50000}; fi
ROUNDS=${ROUNDS:-5}
KEYSPACE=100000
for v in "$ROUNDS" "$CLIENTS"; do [[ $v =~ ^[1-9][0-9]*$ ]] || die "not a positive number: '$v'"; done
IFS=, read -ra depths <<<"$PIPELINES"
((${#depths[@]} > 0)) || die "no pipeline depth"
for d in "${depths[@]}"; do [[ $d =~ ^[1-9][0-9]*$ ]] || die "bad pipeline depth '$d'"; done
# nreq[i]: the requests per test at depth depths[i]
nreq=()
if [[ -z $REQUESTS ]]; then
  for d in "${depths[@]}"; do if ((d == 1)); then nreq+=(300000); else nreq+=(1500000); fi; done
else
  IFS=, read -ra nreq <<<"$REQUESTS"
  ((${#nreq[@]} > 0)) || die "no request count (-n)"
  for v in "${nreq[@]}"; do [[ $v =~ ^[1-9][0-9]*$ ]] || die "not a positive number: '$v' (-n)"; done
  if ((${#nreq[@]} == 1)); then
    for ((i = 1; i < ${#depths[@]}; i++)); do nreq[i]=${nreq[0]}; done
  elif ((${#nreq[@]} != ${#depths[@]})); then
    die "-n has ${#nreq[@]} counts for ${#depths[@]} depths: give one, or one per depth of -P"
  fi
fi
REQUESTS=$(IFS=,; echo "${nreq[*]}")
# the targets, checked, "proxy" read as proxy-t1, each once, in the order given
IFS=, read -ra tl <<<"$TARGETS"
targets=()
for t in "${tl[@]}"; do
  [[ $t == proxy ]] && t=proxy-t1
  [[ ,$ALL_TARGETS, == *,$t,* ]] || die "unknown target '$t' (${ALL_TARGETS//,/, }; proxy = proxy-t1)"
  [[ " ${targets[*]} " == *" $t "* ]] || targets+=("$t")
done
((${#targets[@]} > 0)) || die "no target"
TARGETS=$(IFS=,; echo "${targets[*]}")
TESTS=${TESTS,,}
want() { [[ ,$TARGETS, == *,$1,* ]]; }
wants_test() { [[ ,$TESTS, == *,$1,* ]]; }
is_proxy() { [[ $1 == proxy-t* ]]; }
if want split; then
  split_ok=1
  IFS=, read -ra tl <<<"$TESTS"
  for t in "${tl[@]}"; do [[ $t == get || $t == set ]] || split_ok=0; done
  ((CLIENTS >= 3)) || split_ok=0
  for v in "${nreq[@]}"; do ((v >= 3)) || split_ok=0; done
  if ((!split_ok)); then
    say "target split runs only the tests get and set with -c and -n of 3 or more: left out"
    kept=()
    for t in "${targets[@]}"; do [[ $t == split ]] || kept+=("$t"); done
    ((${#kept[@]} > 0)) || die "no target left"
    targets=("${kept[@]}")
    TARGETS=$(IFS=,; echo "${targets[*]}")
  fi
fi

# --- tools -----------------------------------------------------------------------
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || die "$tool not found: run sh scripts/ensure-deps.sh"
done
if want proxy-t1 || want proxy-t2; then
  [[ -f bin/aster-proxy.js && -f dist/src/main.js ]] || die "the proxy is not built: run npm run build"
fi
HZ=$(getconf CLK_TCK)

# --- processes started here, stopped at exit -------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aster-bench-cluster.XXXXXX")
pids=() comms=() fg_pids=()
track() { pids+=("$1"); comms+=("$2"); } # PID, expected /proc/PID/comm
descendants() { local c; echo "$1"; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; done; }
cleanup() {
  local i pid n left all=() allc=()
  trap - EXIT INT TERM
  for pid in "${fg_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # what runs now under each process started here (the proxy's workers), for the
  # case that they outlive it; the proxy itself stops them
  for ((i = 0; i < ${#pids[@]}; i++)); do
    for pid in $(descendants "${pids[$i]}"); do all+=("$pid"); allc+=("${comms[$i]}"); done
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # the proxies first, then the redis-servers
    pid=${pids[$i]}
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${comms[$i]}" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for n in $(seq 1 50); do
    left=0
    for pid in "${all[@]}"; do [[ -e /proc/$pid ]] && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for ((i = 0; i < ${#all[@]}; i++)); do
    pid=${all[$i]}
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${allc[$i]}" ]]; then
      say "${allc[$i]} (pid $pid) still there 5 s after SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "scratch dir kept: $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Commands that do the work run in the background and are waited for, with their PIDs
# in fg_pids meanwhile, so that Ctrl-C / SIGTERM stop them at once (cleanup kills them).
# wait_fg: waits for every PID in fg_pids; returns the last non-zero exit status.
wait_fg() {
  local pid rc=0
  for pid in "${fg_pids[@]}"; do wait "$pid" || rc=$?; done
  fg_pids=()
  return "$rc"
}
# run_fg CMD...: runs CMD so, returns its exit status.
run_fg() {
  "$@" &
  fg_pids=($!)
  wait_fg
}

# --- ports -----------------------------------------------------------------------
# free_port VAR: sets VAR to a random port in 20000-29999 (below the kernel's
# ephemeral range, so tests that listen on port 0 never take it) that nothing
# accepts connections on and that this script has not handed out yet.
used_ports=" "
free_port() {
  local _port _try # names the caller's VAR cannot be
  for _try in $(seq 1 200); do
    _port=$((20000 + RANDOM % 10000))
    [[ $used_ports == *" $_port "* ]] && continue
    (exec 3<>"/dev/tcp/$HOST/$_port") 2>/dev/null && continue
    used_ports+="$_port "
    printf -v "$1" %s "$_port"
    return 0
  done
  die "no free port found in 20000-29999"
}

# wait_ready PORT PID NAME LOG: until PING answers PONG on PORT, while PID lives
wait_ready() {
  local i
  for i in $(seq 1 100); do
    [[ -e /proc/$2 ]] || { tail -n 20 "$4" >&2 || true; die "$3 exited at start (log above)"; }
    [[ $(redis-cli -h "$HOST" -p "$1" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  tail -n 20 "$4" >&2 || true
  die "$3 does not answer PING on port $1 after 10 s (log above)"
}

# cluster_ok PORT: CLUSTER INFO on PORT says cluster_state:ok
# (no pipe into grep -q: with pipefail, redis-cli could die of SIGPIPE and fail the test)
cluster_ok() { [[ $(redis-cli -h "$HOST" -p "$1" cluster info 2>/dev/null) == *cluster_state:ok* ]]; }

# --- start: three cluster masters, the cluster, the proxy --------------------------
rports=() rpids=()
for s in 1 2 3; do
  free_port p; free_port bp # client port, cluster bus port (both below the ephemeral range)
  mkdir -p "$tmp/redis-$p"
  redis-server --port "$p" --cluster-port "$bp" --bind "$HOST" --cluster-enabled yes \
    --cluster-config-file "$tmp/redis-$p/nodes.conf" --save '' --appendonly no --daemonize no \
    --dir "$tmp/redis-$p" --logfile "$tmp/redis-$p.log" &
  track $! redis-server
  rpids+=($!)
  wait_ready "$p" $! "redis-server $p" "$tmp/redis-$p.log"
  rports+=("$p")
done
say "cluster masters on ${rports[*]}"

run_fg timeout 60 redis-cli --cluster create "$HOST:${rports[0]}" "$HOST:${rports[1]}" "$HOST:${rports[2]}" \
  --cluster-yes > "$tmp/cluster-create.log" 2>&1 \
  || { tail -n 20 "$tmp/cluster-create.log" >&2; die "redis-cli --cluster create failed (output above)"; }
for i in $(seq 1 300); do
  ok=1
  for p in "${rports[@]}"; do cluster_ok "$p" || { ok=0; break; }; done
  ((ok)) && break
  sleep 0.1
done
((ok)) || die "the cluster is not cluster_state:ok on all three nodes after 30 s"
say "cluster_state:ok on all three"

declare -A port_of pid_of mport_of
port_of[direct]=${rports[0]}

# split: a hash tag for each master whose slot that master owns (EXISTS answers
# a number there, MOVED elsewhere)
tags=()
if want split; then
  for i in 0 1 2; do
    for n in $(seq 0 999); do
      o=$(redis-cli -h "$HOST" -p "${rports[$i]}" exists "{n$n}" 2>/dev/null || true)
      if [[ $o =~ ^[0-9]+$ ]]; then tags[i]=n$n; break; fi
    done
    [[ -n ${tags[i]:-} ]] || die "no hash tag found for the master on ${rports[$i]}"
  done
  say "split: tags {${tags[0]}} {${tags[1]}} {${tags[2]}} on ${rports[*]}"
fi
# start_proxy LABEL THREAD: aster-proxy over the cluster; with THREAD > 1 waits until
# its THREAD workers are there; then until its CLUSTER INFO says cluster_state:ok
# THREAD times in a row (each on a new connection, which node:cluster hands to the
# workers in turn: every worker is asked)
start_proxy() {
  local label=$1 thread=$2 pp mp pid i k n=0 ok=0
  free_port pp; free_port mp
  cat > "$tmp/$label.toml" <<EOF
# generated by scripts/bench-cluster.sh
[[clusters]]
name = "bench"
listen_addr = "$HOST:$pp"
cache_type = "redis_cluster"
thread = $thread
servers = ["$HOST:${rports[0]}", "$HOST:${rports[1]}", "$HOST:${rports[2]}"]
EOF
  # shellcheck disable=SC2086 # BENCH_PROXY_ARGS is a list of options
  node bin/aster-proxy.js -c "$tmp/$label.toml" --ip "$HOST" --metrics "$mp" ${BENCH_PROXY_ARGS:-} \
    > "$tmp/$label.log" 2>&1 &
  pid=$!
  track "$pid" node
  pid_of[$label]=$pid
  port_of[$label]=$pp
  mport_of[$label]=$mp
  wait_ready "$pp" "$pid" "$label" "$tmp/$label.log"
  if ((thread > 1)); then
    for i in $(seq 1 100); do
      n=$({ ps -o pid= --ppid "$pid" || true; } | wc -l) # ps fails when there is none
      ((n >= thread)) && break
      sleep 0.1
    done
    ((n >= thread)) || { tail -n 20 "$tmp/$label.log" >&2; die "$label: $n of $thread workers after 10 s (log above)"; }
  fi
  for i in $(seq 1 300); do
    ok=1
    for ((k = 0; k < thread; k++)); do cluster_ok "$pp" || { ok=0; break; }; done
    ((ok)) && break
    sleep 0.1
  done
  ((ok)) || { tail -n 20 "$tmp/$label.log" >&2; die "$label: its CLUSTER INFO is not cluster_state:ok after 30 s (log above)"; }
  say "$label on $pp (pid $pid, thread = $thread, metrics on $mp): cluster_state:ok"
}
if want proxy-t1; then start_proxy proxy-t1 1; fi
if want proxy-t2; then start_proxy proxy-t2 2; fi

# --- measure -------------------------------------------------------------------
# cpu_ticks PID...: utime+stime (clock ticks) of the PIDs and their descendants, and
# the cutime+cstime of each PID (its children that have exited, a replaced worker)
cpu_ticks() {
  local t=0 pid stat root
  for root in "$@"; do
    for pid in $(descendants "$root"); do
      stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
      stat=${stat##*) }                         # fields from the 3rd (state) on
      read -r -a f <<<"$stat"
      t=$((t + f[11] + f[12]))                  # fields 14 and 15: utime, stime
      [[ $pid != "$root" ]] || t=$((t + f[13] + f[14])) # fields 16 and 17: cutime, cstime
    done
  done
  echo "$t"
}
# child_ticks: cutime+cstime of this shell, the CPU of the children it has waited for
# (read without forking, so that nothing but those children moves it)
child_ticks() {
  local stat
  read -r stat < "/proc/$$/stat"
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  echo $((f[13] + f[14]))                       # fields 16 and 17: cutime, cstime
}

# bench TARGET DEPTH REQUESTS: one run of TARGET; rows "TEST,RPS,P50,P99" in
# $tmp/rb.rows, the CPU ticks of the redis-benchmarks in $rb_ticks.
bench() {
  local c0 c1
  c0=$(child_ticks)
  if [[ $1 == split ]]; then bench_split "$2" "$3"; else bench_one "$@"; fi
  c1=$(child_ticks)
  rb_ticks=$((c1 - c0))
}

# the CSV rows of redis-benchmark's output FILE as "TEST,RPS,P50,P99" (columns "test",
# "rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
# "p99_latency_ms","max_latency_ms"; in --cluster mode the CSV follows a description
# of the cluster on stdout)
csv_rows() { awk -F, '/^"/ && !/^"test"/ { gsub(/"/, ""); print $1 "," $2 "," $5 "," $7 }' "$1"; }

bench_one() {
  local cluster=() rc=0
  [[ $1 == direct ]] && cluster=(--cluster)
  run_fg redis-benchmark "${cluster[@]}" -h "$HOST" -p "${port_of[$1]}" -c "$CLIENTS" -n "$3" \
    -r "$KEYSPACE" -t "$TESTS" -P "$2" --csv > "$tmp/rb.out" 2> "$tmp/rb.err" || rc=$?
  ((rc == 0)) || { cat "$tmp/rb.err" "$tmp/rb.out" >&2; die "redis-benchmark against $1 failed (exit $rc)"; }
  csv_rows "$tmp/rb.out" > "$tmp/rb.rows"
  [[ -s $tmp/rb.rows ]] || { cat "$tmp/rb.err" "$tmp/rb.out" >&2; die "no CSV rows from redis-benchmark against $1"; }
}

# bench_split DEPTH REQUESTS: SET then GET (redis-benchmark's own order), each as three
# redis-benchmarks at once, master i getting requests and connections n/3 (+1 for the
# first n%3) and keys key:{tag_i}:__rand_int__; ops/s = all requests / longest run,
# p50 and p99 = the largest of the three
bench_split() {
  local test i ni ci key cmd rc rows=()
  : > "$tmp/rb.rows"
  for test in set get; do
    wants_test "$test" || continue
    fg_pids=()
    for i in 0 1 2; do
      ni=$(($2 / 3 + (i < $2 % 3))) ci=$((CLIENTS / 3 + (i < CLIENTS % 3)))
      key="key:{${tags[i]}}:__rand_int__"
      if [[ $test == set ]]; then cmd=(SET "$key" xxx); else cmd=(GET "$key"); fi
      redis-benchmark -h "$HOST" -p "${rports[$i]}" -c "$ci" -n "$ni" -r "$KEYSPACE" -P "$1" --csv \
        "${cmd[@]}" > "$tmp/split-$i.out" 2> "$tmp/split-$i.err" &
      fg_pids+=($!)
    done
    rc=0
    wait_fg || rc=$?
    ((rc == 0)) || { cat "$tmp"/split-?.err "$tmp"/split-?.out >&2; die "redis-benchmark (split $test) failed (exit $rc)"; }
    for i in 0 1 2; do
      rows[i]=$(csv_rows "$tmp/split-$i.out" | awk -F, '{ print $2 "," $3 "," $4; exit }')
      [[ -n ${rows[i]} ]] || { cat "$tmp/split-$i.err" "$tmp/split-$i.out" >&2; die "no CSV row from redis-benchmark (split $test, master $i)"; }
    done
    awk -v t="${test^^}" -v n="$2" -v r0="${rows[0]}" -v r1="${rows[1]}" -v r2="${rows[2]}" 'BEGIN {
      r[0] = r0; r[1] = r1; r[2] = r2; long = 0; p50 = 0; p99 = 0
      for (i = 0; i < 3; i++) {
        split(r[i], f, ",")                     # RPS,P50,P99 of master i
        ni = int(n / 3) + (i < n % 3); s = ni / f[1]; if (s > long) long = s
        if (f[2] + 0 > p50) p50 = f[2] + 0
        if (f[3] + 0 > p99) p99 = f[3] + 0
      }
      printf "%s,%.2f,%.3f,%.3f\n", t, n / long, p50, p99
    }' >> "$tmp/rb.rows"
  done
}

# error replies so far: of the three nodes (INFO stats total_error_replies) and of a
# proxy (aster_commands_total{result="error"} from its metrics, summed over its workers
# by the primary, but for CONFIG: plain redis-benchmark asks CONFIG GET
# save/appendonly first, which the proxy refuses without admin_commands;
# redis-benchmark then warns "Could not fetch server CONFIG")
node_errors() {
  local p n=0 e
  for p in "${rports[@]}"; do
    e=$(redis-cli -h "$HOST" -p "$p" info stats | awk -F: '/^total_error_replies:/ { print $2 + 0 }')
    n=$((n + ${e:-0}))
  done
  echo "$n"
}
# proxy_errors LABEL
proxy_errors() {
  node -e '
    fetch(process.argv[1]).then((r) => r.text()).then((t) => {
      let n = 0;
      for (const l of t.split("\n")) {
        if (l.startsWith("aster_commands_total{") && l.includes("result=\"error\"") && !l.includes("command=\"config\"")) n += Number(l.split(" ").pop());
      }
      console.log(n);
    }, () => console.log("?"));' "http://$HOST:${mport_of[$1]}/metrics"
}

stamp=$(date -u +%FT%TZ)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo 'no git')
if [[ $rev != "no git" ]] && ! git diff --quiet HEAD -- src 2>/dev/null; then rev+=" + uncommitted changes in src/"; fi
{
  echo "# aster-proxy cluster-mode bench $stamp  $rev"
  echo "# redis-benchmark -c $CLIENTS -r $KEYSPACE -t $TESTS --csv, -P $PIPELINES, -n ${nreq[*]}; $ROUNDS rounds; targets $TARGETS"
  echo "# direct: redis-benchmark --cluster to the 3-master cluster; split: three plain redis-benchmarks, one per master;"
  echo "# proxy-t1 / proxy-t2: plain redis-benchmark to aster-proxy (redis_cluster) in front of the cluster, thread = 1 /"
  echo "# thread = 2 (a primary and 2 workers)"
  echo "# $(redis-server --version | awk '{print $1, $2, $3}'), node $(node --version), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$tmp/header"
cat "$tmp/header" >&2

node_errors0=$(node_errors) # the tag search above got MOVED replies, which count
warm=$((nreq[0] / 10)); ((warm >= 1000)) || warm=1000
say "warm-up: $warm requests per target"
for t in "${targets[@]}"; do bench "$t" 1 "$warm"; done

# perus N TICKS: CPU µs per request of TICKS over the N requests of each row of rb.rows
perus() { awk -v d="$2" -v hz="$HZ" -v n=$(($1 * $(wc -l < "$tmp/rb.rows"))) 'BEGIN { printf "%.2f", 1e6 * d / hz / n }'; }
: > "$tmp/rows"
for ((di = 0; di < ${#depths[@]}; di++)); do
  depth=${depths[$di]} n=${nreq[$di]}
  for ((r = 0; r < ROUNDS; r++)); do
    line="P$depth round $((r + 1)):"
    for ((j = 0; j < ${#targets[@]}; j++)); do
      t=${targets[$(((j + r) % ${#targets[@]}))]}
      r0=$(cpu_ticks "${rpids[@]}")
      x0=0; [[ $t != proxy-t* ]] || x0=$(cpu_ticks "${pid_of[$t]}")
      bench "$t" "$depth" "$n"
      r1=$(cpu_ticks "${rpids[@]}")
      xcpu=-; [[ $t != proxy-t* ]] || xcpu=$(perus "$n" $(($(cpu_ticks "${pid_of[$t]}") - x0)))
      rcpu=$(perus "$n" $((r1 - r0)))
      bcpu=$(perus "$n" "$rb_ticks")
      while IFS=, read -r test rps p50 p99; do
        echo "$depth,$test,$t,$((r + 1)),$rps,$p50,$p99,$xcpu,$rcpu,$bcpu" >> "$tmp/rows"
        line+=" $t $test=${rps%.*}"
      done < "$tmp/rb.rows"
    done
    say "$line"
  done
done
errs="redis nodes $(($(node_errors) - node_errors0))"
for t in "${targets[@]}"; do [[ $t != proxy-t* ]] || errs+=", $t $(proxy_errors "$t")"; done
echo "# error replies during the run: $errs (all should be 0)" >> "$tmp/header"

# --- report: medians over rounds ---------------------------------------------------
report() {
  cat "$tmp/header"
  awk -F, -v order="$ALL_TARGETS" -v depths="$PIPELINES" -v counts="$REQUESTS" '
    function median(list,   a, k, i, j, t) {
      k = split(list, a, " ")
      if (k == 0) return ""
      for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function ratio(a, b) { return (a in rps && b in rps) ? sprintf("%.2f", median(rps[a]) / median(rps[b])) : "-" }
    function goal(d, a, b,   g) {
      g = (d == 1) ? 0.8 : (d == 16) ? 0.9 : 0
      if (!g || !(a in rps) || !(b in rps)) return "-"
      return sprintf(">= %.1f %s", g, (median(rps[a]) / median(rps[b]) >= g) ? "met" : "NOT met")
    }
    function us(list) { return (list != "") ? sprintf("%.2f", median(list)) : "-" }
    function ms(list) { return (list != "") ? sprintf("%.3f", median(list)) : "-" }
    function spread(k) { return sprintf("%.0f..%.0f", lo[k], hi[k]) }
    # run time of one test: its requests / ops/s (min..max over rounds)
    function secs(k, d) { return sprintf("%.3f..%.3f s", nof[d] / hi[k], nof[d] / lo[k]) }
    BEGIN {
      nt = split(order, tg, ",")
      nd = split(depths, dl, ","); split(counts, cl, ",")
      for (i = 1; i <= nd; i++) nof[dl[i]] = cl[i]
    }
    {
      k = $1 SUBSEP $2 SUBSEP $3
      rps[k] = rps[k] " " $5; p50[k] = p50[k] " " $6; p99[k] = p99[k] " " $7
      if (!(k in lo) || $5 + 0 < lo[k]) lo[k] = $5 + 0
      if (!(k in hi) || $5 + 0 > hi[k]) hi[k] = $5 + 0
      row = $1 SUBSEP $2
      if (!(row in seen)) { seen[row] = 1; rows[++nrows] = row }
      # CPU: one sample per run of a target (the same on every test row of the run)
      c = $1 SUBSEP $3 SUBSEP $4
      if (!(c in sampled)) {
        sampled[c] = 1
        dt = $1 SUBSEP $3
        if ($8 != "-") xcpu[dt] = xcpu[dt] " " $8
        rcpu[dt] = rcpu[dt] " " $9; bcpu[dt] = bcpu[dt] " " $10
        all[dt] = all[dt] " " ($9 + $10 + (($8 != "-") ? $8 : 0))
        if (!($1 in dseen)) { dseen[$1] = 1; ds[++nds] = $1 }
      }
    }
    END {
      printf "\nops/s, p50 / p99 (redis-benchmark'"'"'s latency percentiles; split: the largest of its three runs):\n"
      printf "medians over rounds; x direct / x split: ops/s of a proxy target / those of direct / of split\n"
      printf "(ratios of the medians); goal: >= 0.8 at -P 1, >= 0.9 at -P 16.\n"
      printf "\n%-3s %-5s %-8s %10s %8s %14s %7s %14s %8s %8s\n", "P", "test", "target", "ops/s",
        "x direct", "goal", "x split", "same goal", "p50 ms", "p99 ms"
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP); d = rows[i] SUBSEP "direct"; s = rows[i] SUBSEP "split"
        for (j = 1; j <= nt; j++) {
          k = rows[i] SUBSEP tg[j]
          if (!(k in rps)) continue
          px = (tg[j] ~ /^proxy/)
          printf "%-3s %-5s %-8s %10.0f %8s %14s %7s %14s %8s %8s\n", p[1], p[2], tg[j], median(rps[k]),
            px ? ratio(k, d) : "-", px ? goal(p[1], k, d) : "-", px ? ratio(k, s) : "-", px ? goal(p[1], k, s) : "-",
            ms(p50[k]), ms(p99[k])
        }
      }
      printf "\nCPU us per request (utime+stime over a whole run of a target, all its tests, per request;\n"
      printf "median over rounds). redis-benchmark: the --cluster one (direct), the three plain ones (split),\n"
      printf "the plain one (proxy-t1, proxy-t2); aster-proxy: the proxy with its workers.\n"
      printf "\n%-3s %-8s %16s %14s %12s %12s\n", "P", "target", "redis-benchmark", "redis-servers", "aster-proxy", "all"
      for (i = 1; i <= nds; i++) for (j = 1; j <= nt; j++) {
        dt = ds[i] SUBSEP tg[j]
        if (!(dt in rcpu)) continue
        printf "%-3s %-8s %16s %14s %12s %12s\n", ds[i], tg[j], us(bcpu[dt]), us(rcpu[dt]), us(xcpu[dt]), us(all[dt])
      }
      printf "\nspread over rounds (min..max) of ops/s, and of the run time of one test of direct\n"
      printf "(redis-benchmark --cluster ends a test on a 250 ms tick: its run times sit just above multiples of 0.25 s):\n"
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP)
        line = sprintf("%-3s %-5s", p[1], p[2])
        for (j = 1; j <= nt; j++) {
          k = rows[i] SUBSEP tg[j]
          if (!(k in rps)) continue
          line = line sprintf("  %s %s", tg[j], spread(k))
          if (tg[j] == "direct") line = line sprintf(" (%s)", secs(k, p[1]))
        }
        print line
      }
    }' "$tmp/rows"
}

if [[ $OUT == - ]]; then
  report
else
  if [[ -z $OUT ]]; then mkdir -p .run; OUT=.run/bench-cluster-$(date -u +%Y%m%d-%H%M%S).txt; fi
  report | tee "$OUT"
  echo "report saved to $OUT" >&2
fi
