#!/usr/bin/env bash
# bench-cluster.sh - the cluster-mode benchmark (part of `npm run bench`): aster-proxy
# (cache_type "redis_cluster") in front of a 3-master Redis Cluster, against
# redis-benchmark going straight to the cluster, on this machine.
#
# Starts, on free loopback ports: three `redis-server --cluster-enabled yes` masters
# (no replicas; each with its own scratch dir, nodes.conf and cluster bus port;
# --save "" --appendonly no), joins them with `redis-cli --cluster create ...
# --cluster-yes` and waits until CLUSTER INFO says cluster_state:ok on all three;
# then aster-proxy (a generated TOML: cache_type "redis_cluster", thread = 1, the
# three as seeds; --ip 127.0.0.1) and waits until the proxy's own CLUSTER INFO says
# cluster_state:ok. Then, at each pipeline depth, interleaved over several rounds
# (the first target rotates), three targets:
#   direct  redis-benchmark --cluster -h 127.0.0.1 -p NODE1 -c 50 -n N -r 100000 -t get,set --csv -P DEPTH
#   split   three plain redis-benchmarks at once, one per master, each with a third of
#           -c and -n and a {tag} that master owns: -p NODEi ... SET key:{tag}:__rand_int__ xxx,
#           then the same with GET; ops/s = all requests / the longest of the three runs
#   proxy   redis-benchmark -h 127.0.0.1 -p PROXY -c 50 -n N -r 100000 -t get,set --csv -P DEPTH
# and prints per test and depth the median ops/s of each, proxy/direct (a ratio of
# medians) against the goal (>= 0.8 at -P 1, >= 0.9 at -P 16), proxy/split, and per
# depth the CPU µs per request of each process (utime+stime from /proc, over each
# whole run, divided by its requests; median over rounds): the proxy, the three
# redis-servers together, and redis-benchmark itself. Ratios and CPU µs per request
# are what to compare: absolute ops/s move ±20-30% with other load on the machine.
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
#   -n N         requests per redis-benchmark test         [200000]  env BENCH_REQUESTS
#   -P DEPTHS    pipeline depths, comma-separated          [1,16]    env BENCH_PIPELINES
#   -c CLIENTS   redis-benchmark connections               [50]      env BENCH_CLIENTS
#   -t TESTS     redis-benchmark tests (split: get,set)    [get,set] env BENCH_TESTS
#   -T TARGETS   any of direct,split,proxy                 [all]     env BENCH_CLUSTER_TARGETS
#   -q           quick look: 2 rounds of 50000 requests (unless -r / -n say otherwise)
#   -o FILE      also write the report to FILE             [.run/bench-cluster-DATE.txt; "-": none]
#   -h           this help
# Env: BENCH_PROXY_ARGS (extra aster-proxy options), BENCH_KEEP=1 (keep the
# scratch dir with configs and logs).
#
# Everything runs from a scratch dir under $TMPDIR; the repo gets nothing but the
# report under .run/ (git-ignored). Exactly the processes started here are
# stopped at the end or on Ctrl-C (by PID). Needs: bash, awk, redis-server,
# redis-cli, redis-benchmark (Redis 7), node and a built proxy; `npm run bench`
# installs and builds first. A benchmark, not a test: nothing here fails on speed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST=127.0.0.1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
die() { echo "bench-cluster: $*" >&2; exit 1; }
say() { echo "bench-cluster: $*" >&2; }

ROUNDS=${BENCH_ROUNDS:-} REQUESTS=${BENCH_REQUESTS:-}
PIPELINES=${BENCH_PIPELINES:-1,16} CLIENTS=${BENCH_CLIENTS:-50} TESTS=${BENCH_TESTS:-get,set}
TARGETS=${BENCH_CLUSTER_TARGETS:-direct,split,proxy} OUT="" QUICK=0
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
ROUNDS=${ROUNDS:-5} REQUESTS=${REQUESTS:-200000}
KEYSPACE=100000
for v in "$ROUNDS" "$REQUESTS" "$CLIENTS"; do [[ $v =~ ^[1-9][0-9]*$ ]] || die "not a positive number: '$v'"; done
IFS=, read -ra depths <<<"$PIPELINES"
for d in "${depths[@]}"; do [[ $d =~ ^[1-9][0-9]*$ ]] || die "bad pipeline depth '$d'"; done
IFS=, read -ra targets <<<"$TARGETS"
((${#targets[@]} > 0)) || die "no target"
for t in "${targets[@]}"; do
  case $t in direct | split | proxy) ;; *) die "unknown target '$t' (direct, split, proxy)" ;; esac
done
TESTS=${TESTS,,}
want() { [[ ,$TARGETS, == *,$1,* ]]; }
wants_test() { [[ ,$TESTS, == *,$1,* ]]; }
if want split; then
  split_ok=1
  IFS=, read -ra tl <<<"$TESTS"
  for t in "${tl[@]}"; do [[ $t == get || $t == set ]] || split_ok=0; done
  ((CLIENTS >= 3 && REQUESTS >= 3)) || split_ok=0
  if ((!split_ok)); then
    say "target split runs only the tests get and set with -c and -n of 3 or more: left out"
    kept=()
    for t in "${targets[@]}"; do [[ $t == split ]] || kept+=("$t"); done
    targets=("${kept[@]}")
    TARGETS=$(IFS=,; echo "${targets[*]}")
    ((${#targets[@]} > 0)) || die "no target left"
  fi
fi

# --- tools -----------------------------------------------------------------------
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || die "$tool not found: run sh scripts/ensure-deps.sh"
done
if want proxy; then
  [[ -f bin/aster-proxy.js && -f dist/src/main.js ]] || die "the proxy is not built: run npm run build"
fi
HZ=$(getconf CLK_TCK)

# --- processes started here, stopped at exit -------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aster-bench-cluster.XXXXXX")
pids=() comms=() fg_pids=()
track() { pids+=("$1"); comms+=("$2"); } # PID, expected /proc/PID/comm
cleanup() {
  local i pid n left
  trap - EXIT INT TERM
  for pid in "${fg_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # the proxy first, then the redis-servers
    pid=${pids[$i]}
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${comms[$i]}" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for n in $(seq 1 50); do
    left=0
    for pid in "${pids[@]}"; do [[ -e /proc/$pid ]] && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    pid=${pids[$i]}
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${comms[$i]}" ]]; then
      say "${comms[$i]} (pid $pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true
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

declare -A port_of
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
proxy_pid="" mp=""

if want proxy; then
  free_port pp; free_port mp
  cat > "$tmp/aster.toml" <<EOF
# generated by scripts/bench-cluster.sh
[[clusters]]
name = "bench"
listen_addr = "$HOST:$pp"
cache_type = "redis_cluster"
thread = 1
servers = ["$HOST:${rports[0]}", "$HOST:${rports[1]}", "$HOST:${rports[2]}"]
EOF
  # shellcheck disable=SC2086 # BENCH_PROXY_ARGS is a list of options
  node bin/aster-proxy.js -c "$tmp/aster.toml" --ip "$HOST" --metrics "$mp" ${BENCH_PROXY_ARGS:-} \
    > "$tmp/proxy.log" 2>&1 &
  track $! node
  proxy_pid=$!
  port_of[proxy]=$pp
  wait_ready "$pp" "$proxy_pid" aster-proxy "$tmp/proxy.log"
  for i in $(seq 1 300); do cluster_ok "$pp" && break; sleep 0.1; done
  cluster_ok "$pp" || { tail -n 20 "$tmp/proxy.log" >&2; die "the proxy's CLUSTER INFO is not cluster_state:ok after 30 s (log above)"; }
  say "aster-proxy on $pp (pid $proxy_pid, metrics on $mp): cluster_state:ok"
fi

# --- measure -------------------------------------------------------------------
# cpu_ticks PID...: utime+stime (clock ticks) of the PIDs and their descendants
descendants() { local c; echo "$1"; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; done; }
cpu_ticks() {
  local t=0 pid stat root
  for root in "$@"; do
    for pid in $(descendants "$root"); do
      stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
      stat=${stat##*) }                         # fields from the 3rd (state) on
      read -r -a f <<<"$stat"
      t=$((t + f[11] + f[12]))                  # fields 14 and 15: utime, stime
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

# bench TARGET DEPTH REQUESTS: one run of TARGET; rows "TEST,RPS" in $tmp/rb.rows, the
# CPU ticks of the redis-benchmarks in $rb_ticks.
bench() {
  local c0 c1
  c0=$(child_ticks)
  if [[ $1 == split ]]; then bench_split "$2" "$3"; else bench_one "$@"; fi
  c1=$(child_ticks)
  rb_ticks=$((c1 - c0))
}

bench_one() {
  local cluster=() rc=0
  [[ $1 == direct ]] && cluster=(--cluster)
  run_fg redis-benchmark "${cluster[@]}" -h "$HOST" -p "${port_of[$1]}" -c "$CLIENTS" -n "$3" \
    -r "$KEYSPACE" -t "$TESTS" -P "$2" --csv > "$tmp/rb.out" 2> "$tmp/rb.err" || rc=$?
  ((rc == 0)) || { cat "$tmp/rb.err" "$tmp/rb.out" >&2; die "redis-benchmark against $1 failed (exit $rc)"; }
  # in --cluster mode the CSV follows a description of the cluster on stdout
  awk -F, '/^"/ && !/^"test"/ { gsub(/"/, ""); print $1 "," $2 }' "$tmp/rb.out" > "$tmp/rb.rows"
  [[ -s $tmp/rb.rows ]] || { cat "$tmp/rb.err" "$tmp/rb.out" >&2; die "no CSV rows from redis-benchmark against $1"; }
}

# bench_split DEPTH REQUESTS: SET then GET (redis-benchmark's own order), each as three
# redis-benchmarks at once, master i getting requests and connections n/3 (+1 for the
# first n%3) and keys key:{tag_i}:__rand_int__; ops/s = all requests / longest run
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
      rows[i]=$(awk -F, '/^"/ && !/^"test"/ { gsub(/"/, ""); print $2; exit }' "$tmp/split-$i.out")
      [[ -n ${rows[i]} ]] || { cat "$tmp/split-$i.err" "$tmp/split-$i.out" >&2; die "no CSV row from redis-benchmark (split $test, master $i)"; }
    done
    awk -v t="${test^^}" -v n="$2" -v r0="${rows[0]}" -v r1="${rows[1]}" -v r2="${rows[2]}" 'BEGIN {
      split(r0 " " r1 " " r2, r, " "); long = 0
      for (i = 0; i < 3; i++) { ni = int(n / 3) + (i < n % 3); s = ni / r[i + 1]; if (s > long) long = s }
      printf "%s,%.2f\n", t, n / long
    }' >> "$tmp/rb.rows"
  done
}

# error replies so far: of the three nodes (INFO stats total_error_replies) and of the
# proxy (aster_commands_total{result="error"} from its metrics, but for CONFIG: plain
# redis-benchmark asks CONFIG GET save/appendonly first, which the proxy refuses
# without admin_commands; redis-benchmark then warns "Could not fetch server CONFIG")
node_errors() {
  local p n=0 e
  for p in "${rports[@]}"; do
    e=$(redis-cli -h "$HOST" -p "$p" info stats | awk -F: '/^total_error_replies:/ { print $2 + 0 }')
    n=$((n + ${e:-0}))
  done
  echo "$n"
}
proxy_errors() {
  [[ -n $proxy_pid ]] || { echo -; return; }
  node -e '
    fetch(process.argv[1]).then((r) => r.text()).then((t) => {
      let n = 0;
      for (const l of t.split("\n")) {
        if (l.startsWith("aster_commands_total{") && l.includes("result=\"error\"") && !l.includes("command=\"config\"")) n += Number(l.split(" ").pop());
      }
      console.log(n);
    }, () => console.log("?"));' "http://$HOST:$mp/metrics"
}

stamp=$(date -u +%FT%TZ)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo 'no git')
if [[ $rev != "no git" ]] && ! git diff --quiet HEAD -- src 2>/dev/null; then rev+=" + uncommitted changes in src/"; fi
{
  echo "# aster-proxy cluster-mode bench $stamp  $rev"
  echo "# redis-benchmark -c $CLIENTS -n $REQUESTS -r $KEYSPACE -t $TESTS, depths $PIPELINES, $ROUNDS rounds, targets $TARGETS"
  echo "# direct: redis-benchmark --cluster to the 3-master cluster; split: three plain redis-benchmarks, one per master;"
  echo "# proxy: plain redis-benchmark to aster-proxy (redis_cluster, thread = 1) in front of the cluster"
  echo "# $(redis-server --version | awk '{print $1, $2, $3}'), node $(node --version), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$tmp/header"
cat "$tmp/header" >&2

node_errors0=$(node_errors) # the tag search above got MOVED replies, which count
say "warm-up: $((REQUESTS / 10)) requests per target"
for t in "${targets[@]}"; do bench "$t" 1 $((REQUESTS / 10)); done

ntests=$(awk -F, '{print NF}' <<<"$TESTS")
perus() { awk -v d="$1" -v hz="$HZ" -v n=$((REQUESTS * ntests)) 'BEGIN { printf "%.2f", 1e6 * d / hz / n }'; }
: > "$tmp/rows"
for depth in "${depths[@]}"; do
  for ((r = 0; r < ROUNDS; r++)); do
    line="P$depth round $((r + 1)):"
    for ((j = 0; j < ${#targets[@]}; j++)); do
      t=${targets[$(((j + r) % ${#targets[@]}))]}
      r0=$(cpu_ticks "${rpids[@]}")
      x0=0; [[ $t != proxy ]] || x0=$(cpu_ticks "$proxy_pid")
      bench "$t" "$depth" "$REQUESTS"
      r1=$(cpu_ticks "${rpids[@]}")
      xcpu=-; [[ $t != proxy ]] || xcpu=$(perus $(($(cpu_ticks "$proxy_pid") - x0)))
      rcpu=$(perus $((r1 - r0)))
      bcpu=$(perus "$rb_ticks")
      while IFS=, read -r test rps; do
        echo "$depth,$test,$t,$((r + 1)),$rps,$xcpu,$rcpu,$bcpu" >> "$tmp/rows"
        line+=" $t $test=${rps%.*}"
      done < "$tmp/rb.rows"
    done
    say "$line"
  done
done
echo "# error replies during the run: redis nodes $(($(node_errors) - node_errors0)), proxy $(proxy_errors) (both should be 0)" >> "$tmp/header"

# --- report: medians over rounds ---------------------------------------------------
report() {
  cat "$tmp/header"
  awk -F, -v n="$REQUESTS" '
    function median(list,   a, k, i, j, t) {
      k = split(list, a, " ")
      if (k == 0) return ""
      for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function cell(k) { return (k in rps) ? sprintf("%.0f", median(rps[k])) : "-" }
    function ratio(a, b) { return (a in rps && b in rps) ? sprintf("%.2f", median(rps[a]) / median(rps[b])) : "-" }
    function goal(d, a, b,   g) {
      g = (d == 1) ? 0.8 : (d == 16) ? 0.9 : 0
      if (!g || !(a in rps) || !(b in rps)) return "-"
      return sprintf(">= %.1f %s", g, (median(rps[a]) / median(rps[b]) >= g) ? "met" : "NOT met")
    }
    function us(list) { return (list != "") ? sprintf("%.2f", median(list)) : "-" }
    function spread(k) { return (k in rps) ? sprintf("%.0f..%.0f", lo[k], hi[k]) : "-" }
    # run time of one test: n requests / ops/s (min..max over rounds)
    function secs(k) { return (k in rps) ? sprintf("%.3f..%.3f s", n / hi[k], n / lo[k]) : "-" }
    {
      k = $1 SUBSEP $2 SUBSEP $3
      rps[k] = rps[k] " " $5
      if (!(k in lo) || $5 + 0 < lo[k]) lo[k] = $5 + 0
      if (!(k in hi) || $5 + 0 > hi[k]) hi[k] = $5 + 0
      row = $1 SUBSEP $2
      if (!(row in seen)) { seen[row] = 1; rows[++nrows] = row }
      # CPU: one sample per run of a target (the same on every test row of the run)
      c = $1 SUBSEP $3 SUBSEP $4
      if (!(c in sampled)) {
        sampled[c] = 1
        dt = $1 SUBSEP $3
        if ($6 != "-") xcpu[dt] = xcpu[dt] " " $6
        rcpu[dt] = rcpu[dt] " " $7; bcpu[dt] = bcpu[dt] " " $8
        all[dt] = all[dt] " " ($7 + $8 + (($6 != "-") ? $6 : 0))
        if (!($1 in dseen)) { dseen[$1] = 1; ds[++nds] = $1 }
      }
    }
    END {
      printf "\nops/s: median over rounds; ratios of the medians; goal: proxy/direct >= 0.8 at -P 1, >= 0.9 at -P 16.\n"
      printf "\n%-3s %-5s %10s %10s %10s %12s %12s %11s %12s\n", "P", "test", "direct", "split", "proxy",
        "proxy/direct", "goal", "proxy/split", "same goal"
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP); d = rows[i] SUBSEP "direct"; s = rows[i] SUBSEP "split"; x = rows[i] SUBSEP "proxy"
        printf "%-3s %-5s %10s %10s %10s %12s %12s %11s %12s\n", p[1], p[2], cell(d), cell(s), cell(x),
          ratio(x, d), goal(p[1], x, d), ratio(x, s), goal(p[1], x, s)
      }
      printf "\nCPU us per request (utime+stime over a whole run of a target, all its tests, per request;\n"
      printf "median over rounds). redis-benchmark: the --cluster one (direct), the three plain ones (split),\n"
      printf "the plain one (proxy).\n"
      printf "\n%-3s %-7s %16s %14s %12s %12s\n", "P", "target", "redis-benchmark", "redis-servers", "aster-proxy", "all"
      for (i = 1; i <= nds; i++) for (t = 1; t <= 3; t++) {
        tg = (t == 1) ? "direct" : (t == 2) ? "split" : "proxy"; dt = ds[i] SUBSEP tg
        if (!(dt in rcpu)) continue
        printf "%-3s %-7s %16s %14s %12s %12s\n", ds[i], tg, us(bcpu[dt]), us(rcpu[dt]), us(xcpu[dt]), us(all[dt])
      }
      printf "\nspread over rounds (min..max) of ops/s, and of the run time of one test of direct\n"
      printf "(redis-benchmark --cluster ends a test on a 250 ms tick: its run times sit just above multiples of 0.25 s):\n"
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP)
        printf "%-3s %-5s direct %s (%s)  split %s  proxy %s\n", p[1], p[2], spread(rows[i] SUBSEP "direct"),
          secs(rows[i] SUBSEP "direct"), spread(rows[i] SUBSEP "split"), spread(rows[i] SUBSEP "proxy")
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
