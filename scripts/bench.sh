#!/usr/bin/env bash
# bench.sh - `npm run bench`: aster-proxy side by side with twemproxy (nutcracker)
# and direct Redis, on this machine, in one run (the method of DESIGN.md §4).
#
# Starts, on free loopback ports: three redis-servers; nutcracker over them
# (ketama, fnv1a_64, redis: true, server_connections 1, auto_eject_hosts false,
# servers "127.0.0.1:PORT:1 sN"); aster-proxy over the same three (a generated
# TOML: cache_type "redis", thread = 1, the same server lines). Then runs
#   redis-benchmark -c 50 -n N -r 100000 -t get,set --csv -P DEPTH
# at each pipeline depth against direct Redis (the first of the three),
# nutcracker and the proxy, interleaved over several rounds (the first target
# rotates: A B C, B C A, C A B, ...), and prints per test and depth: the median
# ops/s of each target, proxy/nutcracker and proxy/direct (ratios of medians), and
# CPU µs per request of the proxy and of nutcracker (utime+stime from
# /proc/PID/stat, the process and its children, over each run, divided by the
# requests of that run; median over rounds). Ratios and CPU µs per request are
# what to compare: absolute ops/s move ±20-30% with other load on the machine.
#
# Usage: npm run bench [-- OPTIONS]      or      bash scripts/bench.sh [OPTIONS]
#   -r ROUNDS    rounds per depth                          [5]       env BENCH_ROUNDS
#   -n N         requests per redis-benchmark test         [200000]  env BENCH_REQUESTS
#   -P DEPTHS    pipeline depths, comma-separated          [1,16]    env BENCH_PIPELINES
#   -c CLIENTS   redis-benchmark connections               [50]      env BENCH_CLIENTS
#   -t TESTS     redis-benchmark tests                     [get,set] env BENCH_TESTS
#   -T TARGETS   any of redis,nutcracker,proxy             [all]     env BENCH_TARGETS
#   -q           quick look: 2 rounds of 50000 requests (unless -r / -n say otherwise)
#   -o FILE      also write the report to FILE             [.run/bench-DATE.txt; "-": none]
#   -h           this help
# Env: BENCH_PROXY_ARGS (extra aster-proxy options), BENCH_KEEP=1 (keep the
# scratch dir with configs and logs).
#
# Everything runs from a scratch dir under $TMPDIR; the repo gets nothing but the
# report under .run/ (git-ignored). Exactly the processes started here are
# stopped at the end or on Ctrl-C (by PID). Needs: bash, awk, redis-server,
# redis-cli, redis-benchmark, nutcracker, node; `npm run bench` installs and builds
# first. A benchmark, not a test: nothing here fails on speed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
HOST=127.0.0.1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

ROUNDS=${BENCH_ROUNDS:-} REQUESTS=${BENCH_REQUESTS:-}
PIPELINES=${BENCH_PIPELINES:-1,16} CLIENTS=${BENCH_CLIENTS:-50} TESTS=${BENCH_TESTS:-get,set}
TARGETS=${BENCH_TARGETS:-redis,nutcracker,proxy} OUT="" QUICK=0
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
for t in "${targets[@]}"; do
  case $t in redis | nutcracker | proxy) ;; *) die "unknown target '$t' (redis, nutcracker, proxy)" ;; esac
done
want() { [[ ,$TARGETS, == *,$1,* ]]; }

# --- tools -----------------------------------------------------------------------
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || die "$tool not found: run sh scripts/ensure-deps.sh"
done
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)
if want nutcracker; then [[ -x $NUTCRACKER ]] || die "nutcracker not found: run sh scripts/ensure-deps.sh"; fi
if want proxy; then
  [[ -f bin/aster-proxy.js && -f dist/src/main.js ]] || die "the proxy is not built: run npm run build"
fi
HZ=$(getconf CLK_TCK)

# --- processes started here, stopped at exit -------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aster-bench.XXXXXX")
pids=() comms=() bench_pid=""
track() { pids+=("$1"); comms+=("$2"); } # PID, expected /proc/PID/comm
cleanup() {
  local i pid n
  trap - EXIT INT TERM
  [[ -z $bench_pid ]] || kill -TERM "$bench_pid" 2>/dev/null || true
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # proxies first, then the redis-servers
    pid=${pids[$i]}
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${comms[$i]}" ]] && kill -TERM "$pid" 2>/dev/null || true
  done
  for n in $(seq 1 50); do
    local left=0
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

# --- start: three redis-servers, nutcracker, the proxy ----------------------------
rports=()
for s in 1 2 3; do
  free_port p
  mkdir -p "$tmp/redis-$p"
  redis-server --port "$p" --bind "$HOST" --save '' --appendonly no --daemonize no \
    --dir "$tmp/redis-$p" --logfile "$tmp/redis-$p.log" &
  track $! redis-server
  wait_ready "$p" $! "redis-server $p" "$tmp/redis-$p.log"
  rports+=("$p")
done
say "redis-servers on ${rports[*]}"

declare -A port_of pid_of
port_of[redis]=${rports[0]}

if want nutcracker; then
  free_port np; free_port ns
  {
    echo "bench:"
    echo "  listen: $HOST:$np"
    echo "  hash: fnv1a_64"
    echo "  distribution: ketama"
    echo "  redis: true"
    echo "  preconnect: true"
    echo "  auto_eject_hosts: false"
    echo "  server_connections: 1"
    echo "  timeout: 2000"
    echo "  servers:"
    for s in 1 2 3; do echo "   - $HOST:${rports[$((s - 1))]}:1 s$s"; done
  } > "$tmp/nutcracker.yml"
  "$NUTCRACKER" -t -c "$tmp/nutcracker.yml" > "$tmp/nutcracker-check.log" 2>&1 \
    || { cat "$tmp/nutcracker-check.log" >&2; die "nutcracker rejected its config"; }
  # foreground (no -d), so that $! is nutcracker itself; -v 4: warnings and errors
  "$NUTCRACKER" -c "$tmp/nutcracker.yml" -s "$ns" -a "$HOST" -v 4 -o "$tmp/nutcracker.log" &
  track $! nutcracker
  pid_of[nutcracker]=$!
  port_of[nutcracker]=$np
  wait_ready "$np" $! nutcracker "$tmp/nutcracker.log"
  say "nutcracker on $np (pid ${pid_of[nutcracker]})"
fi

if want proxy; then
  free_port pp; free_port mp
  cat > "$tmp/aster.toml" <<EOF
# generated by scripts/bench.sh
[[clusters]]
name = "bench"
listen_addr = "$HOST:$pp"
cache_type = "redis"
thread = 1
servers = ["$HOST:${rports[0]}:1 s1", "$HOST:${rports[1]}:1 s2", "$HOST:${rports[2]}:1 s3"]
EOF
  # shellcheck disable=SC2086 # BENCH_PROXY_ARGS is a list of options
  node bin/aster-proxy.js --config "$tmp/aster.toml" --metrics "$mp" ${BENCH_PROXY_ARGS:-} \
    > "$tmp/proxy.log" 2>&1 &
  track $! node
  pid_of[proxy]=$!
  port_of[proxy]=$pp
  wait_ready "$pp" $! aster-proxy "$tmp/proxy.log"
  say "aster-proxy on $pp (pid ${pid_of[proxy]}, metrics on $mp)"
fi

# --- measure -------------------------------------------------------------------
# cpu_ticks PID: utime+stime (clock ticks) of PID and its descendants
descendants() { local c; echo "$1"; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; done; }
cpu_ticks() {
  local t=0 pid stat
  for pid in $(descendants "$1"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }                         # fields from the 3rd (state) on
    read -r -a f <<<"$stat"
    t=$((t + f[11] + f[12]))                  # fields 14 and 15: utime, stime
  done
  echo "$t"
}

# bench TARGET DEPTH REQUESTS: one redis-benchmark run; rows "TEST,RPS" in $tmp/rb.rows.
# Runs in the background and is waited for, so that Ctrl-C / SIGTERM stop it at once.
bench() {
  redis-benchmark -h "$HOST" -p "${port_of[$1]}" -c "$CLIENTS" -n "$3" -r "$KEYSPACE" \
    -t "$TESTS" -P "$2" --csv > "$tmp/rb.out" 2> "$tmp/rb.err" &
  bench_pid=$!
  local rc=0
  wait "$bench_pid" || rc=$?
  bench_pid=""
  ((rc == 0)) || { cat "$tmp/rb.err" >&2; die "redis-benchmark against $1 failed (exit $rc)"; }
  awk -F, 'NR > 1 { gsub(/"/, ""); print $1 "," $2 }' "$tmp/rb.out" > "$tmp/rb.rows"
}

stamp=$(date -u +%FT%TZ)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo 'no git')
if [[ $rev != "no git" ]] && ! git diff --quiet HEAD -- src 2>/dev/null; then rev+=" + uncommitted changes in src/"; fi
{
  echo "# aster-proxy bench $stamp  $rev"
  echo "# redis-benchmark -c $CLIENTS -n $REQUESTS -r $KEYSPACE -t $TESTS, depths $PIPELINES, $ROUNDS rounds, targets $TARGETS"
  echo "# $(redis-server --version | awk '{print $1, $2, $3}'), $("$NUTCRACKER" --version 2>&1 | head -n 1 || true), node $(node --version), $(nproc) cores"
} > "$tmp/header"
cat "$tmp/header" >&2

say "warm-up: $((REQUESTS / 10)) requests per target"
for t in "${targets[@]}"; do bench "$t" 1 $((REQUESTS / 10)); done

ntests=$(awk -F, '{print NF}' <<<"$TESTS")
: > "$tmp/rows"
for depth in "${depths[@]}"; do
  for ((r = 0; r < ROUNDS; r++)); do
    line="P$depth round $((r + 1)):"
    for ((j = 0; j < ${#targets[@]}; j++)); do
      t=${targets[$(((j + r) % ${#targets[@]}))]}
      pid=${pid_of[$t]:-}
      c0=0; [[ -z $pid ]] || c0=$(cpu_ticks "$pid")
      bench "$t" "$depth" "$REQUESTS"
      cpu=-
      if [[ -n $pid ]]; then
        c1=$(cpu_ticks "$pid")
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n=$((REQUESTS * ntests)) 'BEGIN { printf "%.2f", 1e6 * d / hz / n }')
      fi
      while IFS=, read -r test rps; do
        echo "$depth,$test,$t,$((r + 1)),$rps,$cpu" >> "$tmp/rows"
        line+=" $t $test=${rps%.*}"
      done < "$tmp/rb.rows"
    done
    say "$line"
  done
done

# --- report: medians over rounds ---------------------------------------------------
report() {
  cat "$tmp/header"
  awk -F, '
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      if (n == 0) return ""
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function cell(k) { return (k in rps) ? sprintf("%.0f", median(rps[k])) : "-" }
    function ratio(a, b) { return (a in rps && b in rps) ? sprintf("%.2f", median(rps[a]) / median(rps[b])) : "-" }
    function us(k) { return (k in cpu) ? sprintf("%.2f", median(cpu[k])) : "-" }
    function spread(k) { return (k in rps) ? sprintf("%.0f..%.0f", lo[k], hi[k]) : "-" }
    {
      k = $1 SUBSEP $2 SUBSEP $3
      rps[k] = rps[k] " " $5
      if ($6 != "-") cpu[k] = cpu[k] " " $6
      if (!(k in lo) || $5 + 0 < lo[k]) lo[k] = $5 + 0
      if (!(k in hi) || $5 + 0 > hi[k]) hi[k] = $5 + 0
      row = $1 SUBSEP $2
      if (!(row in seen)) { seen[row] = 1; rows[++nrows] = row }
    }
    END {
      printf "\nops/s: median over rounds. us/req: CPU time of the process over a whole redis-benchmark\n"
      printf "run (all its tests) per request, median over rounds; the same for every test of a depth.\n"
      printf "\n%-3s %-5s %10s %10s %10s %16s %12s %12s %17s\n", "P", "test", "direct", "nutcracker", "proxy",
        "proxy/nutcracker", "proxy/direct", "proxy us/req", "nutcracker us/req"
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP); r = rows[i] SUBSEP "redis"; n = rows[i] SUBSEP "nutcracker"; x = rows[i] SUBSEP "proxy"
        printf "%-3s %-5s %10s %10s %10s %16s %12s %12s %17s\n", p[1], p[2], cell(r), cell(n), cell(x),
          ratio(x, n), ratio(x, r), us(x), us(n)
      }
      printf "\nspread of ops/s over rounds (min..max):\n"
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP)
        printf "%-3s %-5s direct %s  nutcracker %s  proxy %s\n", p[1], p[2],
          spread(rows[i] SUBSEP "redis"), spread(rows[i] SUBSEP "nutcracker"), spread(rows[i] SUBSEP "proxy")
      }
    }' "$tmp/rows"
}

if [[ $OUT == - ]]; then
  report
else
  if [[ -z $OUT ]]; then mkdir -p .run; OUT=.run/bench-$(date -u +%Y%m%d-%H%M%S).txt; fi
  report | tee "$OUT"
  echo "report saved to $OUT" >&2
fi
