#!/usr/bin/env bash
# bench.sh - `npm run bench`: aster-proxy side by side with twemproxy (nutcracker)
# and direct Redis, on this machine, in one run (the method of DESIGN.md §4).
#
# Starts, on free loopback ports: three redis-servers; nutcracker over them
# (ketama, fnv1a_64, redis: true, server_connections 1, auto_eject_hosts false,
# servers "127.0.0.1:PORT:1 sN"), once with -v 4 and, if asked for, once more at its
# default verbosity; aster-proxy over the same three (a generated TOML: cache_type
# "redis", the same server lines), once with thread = 1 and once with thread = 2.
# The targets:
#   redis          the first of the three redis-servers, directly
#   nutcracker     nutcracker -v 4 (warnings and errors only): the reference of the ratios
#   nutcracker-v5  nutcracker at its default verbosity (5: it logs every connection)
#   aster-t1       aster-proxy, thread = 1 (one process)
#   aster-t2       aster-proxy, thread = 2 (a primary and two worker processes)
#   (proxy is another name for aster-t1)
#   node-floor     scripts/node-floor.mjs: a Node server that decodes each request with the
#                  proxy's decoder and answers it itself, no backend: what Node's sockets
#                  and event loop cost before a proxy does any work (not by default)
# Two parts, each interleaved over several rounds (the first target rotates:
# A B C, B C A, C A B, ...):
#   keep-alive    redis-benchmark -c 50 -n N -r 100000 -t get,set --csv -P DEPTH, per depth
#   conn/request  redis-benchmark -k 0 -c CLIENTS -n NC -r 100000 -t get --csv, per client
#                 count: every request on a new connection (connect, GET, close)
# and prints per part, depth or client count, and test, for every target: the median
# ops/s, its ratio to nutcracker (-v 4; to nutcracker-v5 when that is the only one)
# and to direct Redis (ratios of medians), the medians of redis-benchmark's p50 and
# p99 latency, CPU µs per request (= per connection in the conn/request part) of the
# process(es) behind the port (utime+stime from /proc/PID/stat over each run, of the
# process, its children and the children it has reaped: redis-server for redis,
# nutcracker, the proxy with its workers; divided by the requests of that run; median
# over rounds), and the min..max of ops/s over rounds. Ratios and CPU µs per request
# are what to compare: absolute ops/s move ±20-30% with other load on the machine.
#
# Usage: npm run bench [-- OPTIONS]      or      bash scripts/bench.sh [OPTIONS]
#   -r ROUNDS    rounds per depth and per client count       [5]       env BENCH_ROUNDS
#   -n N[,N..]   keep-alive requests per test: one for all depths or
#                one per depth of -P                         [200000]  env BENCH_REQUESTS
#   -P DEPTHS    keep-alive pipeline depths, comma-separated [1,16]    env BENCH_PIPELINES
#   -c CLIENTS   keep-alive redis-benchmark connections      [50]      env BENCH_CLIENTS
#   -t TESTS     keep-alive redis-benchmark tests            [get,set] env BENCH_TESTS
#   -T TARGETS   keep-alive targets, any of redis,nutcracker,nutcracker-v5,aster-t1,aster-t2
#                ("none": no keep-alive part)  [redis,nutcracker,aster-t1,aster-t2]  env BENCH_TARGETS
#   -k CLIENTS   conn/request client counts, comma-separated
#                ("none": no conn/request part)              [1,50]    env BENCH_CONN_CLIENTS
#   -N N         conn/request requests (= connections) per run [20000] env BENCH_CONN_REQUESTS
#   -K TARGETS   conn/request targets, as -T  [redis,nutcracker,nutcracker-v5,aster-t1,aster-t2]
#                                                                      env BENCH_CONN_TARGETS
#   -q           quick look: 2 rounds, -n 50000, -N 5000 (unless -r / -n / -N say otherwise)
#   -o FILE      also write the report to FILE             [.run/bench-DATE.txt; "-": none]
#   -h           this help
# Env: BENCH_PROXY_ARGS (extra aster-proxy options), BENCH_KEEP=1 (keep the
# scratch dir with configs and logs).
#
# Everything runs from a scratch dir under $TMPDIR; the repo gets nothing but the
# report under .run/ (git-ignored). Exactly the processes started here are
# stopped at the end or on Ctrl-C (by PID; the proxy's workers are stopped by the
# proxy, and by PID here if they outlive it). Needs: bash, awk, redis-server,
# redis-cli, redis-benchmark (7: its CSV has the latency percentiles), nutcracker,
# node; `npm run bench` installs and builds first. A benchmark, not a test: nothing
# here fails on speed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
HOST=127.0.0.1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-2}"; }
die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

ALL_TARGETS=redis,nutcracker,nutcracker-v5,aster-t1,aster-t2,node-floor
ROUNDS=${BENCH_ROUNDS:-} REQUESTS=${BENCH_REQUESTS:-} CONN_REQUESTS=${BENCH_CONN_REQUESTS:-}
PIPELINES=${BENCH_PIPELINES:-1,16} CLIENTS=${BENCH_CLIENTS:-50} TESTS=${BENCH_TESTS:-get,set}
TARGETS=${BENCH_TARGETS:-redis,nutcracker,aster-t1,aster-t2}
CONN_CLIENTS=${BENCH_CONN_CLIENTS:-1,50}
CONN_TARGETS=${BENCH_CONN_TARGETS:-redis,nutcracker,nutcracker-v5,aster-t1,aster-t2}
OUT="" QUICK=0
while getopts "r:n:P:c:t:T:k:N:K:qo:h" opt; do
  case $opt in
    r) ROUNDS=$OPTARG ;; n) REQUESTS=$OPTARG ;; P) PIPELINES=$OPTARG ;;
    c) CLIENTS=$OPTARG ;; t) TESTS=$OPTARG ;; T) TARGETS=$OPTARG ;;
    k) CONN_CLIENTS=$OPTARG ;; N) CONN_REQUESTS=$OPTARG ;; K) CONN_TARGETS=$OPTARG ;;
    q) QUICK=1 ;; o) OUT=$OPTARG ;; h) usage 0 ;; *) usage ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage
if ((QUICK)); then ROUNDS=${ROUNDS:-2} REQUESTS=${REQUESTS:-50000} CONN_REQUESTS=${CONN_REQUESTS:-5000}; fi
ROUNDS=${ROUNDS:-5} REQUESTS=${REQUESTS:-200000} CONN_REQUESTS=${CONN_REQUESTS:-20000}
KEYSPACE=100000
for v in "$ROUNDS" "$CLIENTS" "$CONN_REQUESTS"; do [[ $v =~ ^[1-9][0-9]*$ ]] || die "not a positive number: '$v'"; done

# targets_of VAR LIST: VAR = the targets of a comma-separated LIST, checked, "proxy"
# read as aster-t1, each once; "none": no target
targets_of() {
  local -n _out=$1
  local _t _tl
  _out=()
  [[ $2 == none ]] && return 0
  IFS=, read -ra _tl <<<"$2"
  for _t in "${_tl[@]}"; do
    [[ $_t == proxy ]] && _t=aster-t1
    [[ ,$ALL_TARGETS, == *,$_t,* ]] || die "unknown target '$_t' (${ALL_TARGETS//,/, }; proxy = aster-t1)"
    [[ " ${_out[*]} " == *" $_t "* ]] || _out+=("$_t")
  done
  ((${#_out[@]} > 0)) || die "no target in '$2'"
}
targets=() ktargets=()
targets_of targets "$TARGETS"
targets_of ktargets "$CONN_TARGETS"
depths=() nreq=() kclients=()
if ((${#targets[@]} > 0)); then
  IFS=, read -ra depths <<<"$PIPELINES"
  for d in "${depths[@]}"; do [[ $d =~ ^[1-9][0-9]*$ ]] || die "bad pipeline depth '$d'"; done
  IFS=, read -ra nreq <<<"$REQUESTS"
  for v in "${nreq[@]}"; do [[ $v =~ ^[1-9][0-9]*$ ]] || die "not a positive number: '$v' (-n)"; done
  if ((${#nreq[@]} == 1)); then
    for ((i = 1; i < ${#depths[@]}; i++)); do nreq[i]=${nreq[0]}; done
  elif ((${#nreq[@]} != ${#depths[@]})); then
    die "-n has ${#nreq[@]} counts for ${#depths[@]} depths: give one, or one per depth of -P"
  fi
fi
if ((${#ktargets[@]} > 0)) && [[ $CONN_CLIENTS != none ]]; then
  IFS=, read -ra kclients <<<"$CONN_CLIENTS"
  for v in "${kclients[@]}"; do [[ $v =~ ^[1-9][0-9]*$ ]] || die "bad client count '$v' (-k)"; done
fi
((${#kclients[@]} > 0)) || ktargets=()
((${#targets[@]} + ${#ktargets[@]} > 0)) || die "nothing to run: no keep-alive and no conn/request part"
# every target that either part runs, in the order of ALL_TARGETS
used=()
for t in ${ALL_TARGETS//,/ }; do
  [[ " ${targets[*]} ${ktargets[*]} " == *" $t "* ]] && used+=("$t")
done
want() { [[ " ${used[*]} " == *" $1 "* ]]; }

# --- tools -----------------------------------------------------------------------
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || die "$tool not found: run sh scripts/ensure-deps.sh"
done
NUTCRACKER=$(command -v nutcracker || echo /usr/sbin/nutcracker)
if want nutcracker || want nutcracker-v5; then
  [[ -x $NUTCRACKER ]] || die "nutcracker not found: run sh scripts/ensure-deps.sh"
fi
if want aster-t1 || want aster-t2 || want node-floor; then
  [[ -f bin/aster-proxy.js && -f dist/src/main.js ]] || die "the proxy is not built: run npm run build"
fi
HZ=$(getconf CLK_TCK)

# --- processes started here, stopped at exit -------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aster-bench.XXXXXX")
pids=() comms=() bench_pid=""
track() { pids+=("$1"); comms+=("$2"); } # PID, expected /proc/PID/comm
descendants() { local c; echo "$1"; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do descendants "$c"; done; }
cleanup() {
  local i pid n left all=() allc=()
  trap - EXIT INT TERM
  [[ -z $bench_pid ]] || kill -TERM "$bench_pid" 2>/dev/null || true
  # what runs now under each process started here (the proxy's workers), for the
  # case that they outlive it; the proxy itself stops them
  for ((i = 0; i < ${#pids[@]}; i++)); do
    for pid in $(descendants "${pids[$i]}"); do all+=("$pid"); allc+=("${comms[$i]}"); done
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do # proxies first, then the redis-servers
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

# --- start: three redis-servers, nutcrackers, proxies -----------------------------
rports=()
declare -A port_of pid_of
for s in 1 2 3; do
  free_port p
  mkdir -p "$tmp/redis-$p"
  redis-server --port "$p" --bind "$HOST" --save '' --appendonly no --daemonize no \
    --dir "$tmp/redis-$p" --logfile "$tmp/redis-$p.log" &
  track $! redis-server
  ((s > 1)) || pid_of[redis]=$!
  wait_ready "$p" $! "redis-server $p" "$tmp/redis-$p.log"
  rports+=("$p")
done
say "redis-servers on ${rports[*]}"
port_of[redis]=${rports[0]}

# start_nutcracker LABEL [-v N]: a nutcracker over the three, in the foreground (no
# -d), so that $! is nutcracker itself; no -v: its default verbosity
start_nutcracker() {
  local label=$1 np ns s
  shift
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
  } > "$tmp/$label.yml"
  "$NUTCRACKER" -t -c "$tmp/$label.yml" > "$tmp/$label-check.log" 2>&1 \
    || { cat "$tmp/$label-check.log" >&2; die "nutcracker rejected its config"; }
  "$NUTCRACKER" -c "$tmp/$label.yml" -s "$ns" -a "$HOST" "$@" -o "$tmp/$label.log" &
  track $! nutcracker
  pid_of[$label]=$!
  port_of[$label]=$np
  wait_ready "$np" $! "$label" "$tmp/$label.log"
  say "$label on $np (pid ${pid_of[$label]}${*:+, $*})"
}
if want nutcracker; then start_nutcracker nutcracker -v 4; fi # -v 4: warnings and errors
if want nutcracker-v5; then start_nutcracker nutcracker-v5; fi # default verbosity (5)

# start_proxy LABEL THREAD: aster-proxy over the three; with THREAD > 1 waits until
# its THREAD workers are there
start_proxy() {
  local label=$1 thread=$2 pp mp pid i n
  free_port pp; free_port mp
  cat > "$tmp/$label.toml" <<EOF
# generated by scripts/bench.sh
[[clusters]]
name = "bench"
listen_addr = "$HOST:$pp"
cache_type = "redis"
thread = $thread
servers = ["$HOST:${rports[0]}:1 s1", "$HOST:${rports[1]}:1 s2", "$HOST:${rports[2]}:1 s3"]
EOF
  # shellcheck disable=SC2086 # BENCH_PROXY_ARGS is a list of options
  node bin/aster-proxy.js --config "$tmp/$label.toml" --metrics "$mp" ${BENCH_PROXY_ARGS:-} \
    > "$tmp/$label.log" 2>&1 &
  pid=$!
  track "$pid" node
  pid_of[$label]=$pid
  port_of[$label]=$pp
  wait_ready "$pp" "$pid" "$label" "$tmp/$label.log"
  if ((thread > 1)); then
    for i in $(seq 1 100); do
      n=$(ps -o pid= --ppid "$pid" | wc -l)
      ((n >= thread)) && break
      sleep 0.1
    done
    ((n >= thread)) || { tail -n 20 "$tmp/$label.log" >&2; die "$label: $n of $thread workers after 10 s (log above)"; }
  fi
  say "$label on $pp (pid $pid, thread = $thread, metrics on $mp)"
}
if want aster-t1; then start_proxy aster-t1 1; fi
if want aster-t2; then start_proxy aster-t2 2; fi
if want node-floor; then
  free_port fp
  node scripts/node-floor.mjs "$fp" "$HOST" > "$tmp/node-floor.log" 2>&1 &
  track $! node
  pid_of[node-floor]=$!
  port_of[node-floor]=$fp
  wait_ready "$fp" $! node-floor "$tmp/node-floor.log"
  say "node-floor on $fp (pid ${pid_of[node-floor]})"
fi

# --- measure -------------------------------------------------------------------
# cpu_ticks PID: utime+stime (clock ticks) of PID and its descendants, and the
# cutime+cstime of PID (its children that have exited, a replaced worker)
cpu_ticks() {
  local t=0 pid stat
  for pid in $(descendants "$1"); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }                         # fields from the 3rd (state) on
    read -r -a f <<<"$stat"
    t=$((t + f[11] + f[12]))                  # fields 14 and 15: utime, stime
    [[ $pid != "$1" ]] || t=$((t + f[13] + f[14])) # fields 16 and 17: cutime, cstime
  done
  echo "$t"
}

# bench TARGET DEPTH REQUESTS CLIENTS KEEPALIVE TESTS: one redis-benchmark run; rows
# "TEST,RPS,P50,P99" in $tmp/rb.rows. Runs in the background and is waited for, so
# that Ctrl-C / SIGTERM stop it at once.
bench() {
  redis-benchmark -h "$HOST" -p "${port_of[$1]}" -c "$4" -n "$3" -r "$KEYSPACE" -k "$5" \
    -t "$6" -P "$2" --csv > "$tmp/rb.out" 2> "$tmp/rb.err" &
  bench_pid=$!
  local rc=0
  wait "$bench_pid" || rc=$?
  bench_pid=""
  ((rc == 0)) || { cat "$tmp/rb.err" >&2; die "redis-benchmark against $1 failed (exit $rc)"; }
  # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  awk -F, '/^"/ && !/^"test"/ { gsub(/"/, ""); print $1 "," $2 "," $5 "," $7 }' "$tmp/rb.out" > "$tmp/rb.rows"
  [[ -s $tmp/rb.rows ]] || { cat "$tmp/rb.err" "$tmp/rb.out" >&2; die "no CSV rows from redis-benchmark against $1"; }
}

# measure PART VALUE: every round of one part at one depth (PART P, VALUE the depth)
# or one client count (PART C, VALUE the clients); rows
# "PART,VALUE,TEST,TARGET,ROUND,RPS,P50,P99,CPU_US" appended to $tmp/rows
measure() {
  local part=$1 v=$2 list n clients keep tests depth r j t pid c0 c1 cpu line nrows
  if [[ $part == P ]]; then
    list=("${targets[@]}") n=$3 clients=$CLIENTS keep=1 tests=$TESTS depth=$v
  else
    list=("${ktargets[@]}") n=$CONN_REQUESTS clients=$v keep=0 tests=get depth=1
  fi
  for ((r = 0; r < ROUNDS; r++)); do
    line="$part$v round $((r + 1)):"
    for ((j = 0; j < ${#list[@]}; j++)); do
      t=${list[$(((j + r) % ${#list[@]}))]}
      pid=${pid_of[$t]}
      c0=$(cpu_ticks "$pid")
      bench "$t" "$depth" "$n" "$clients" "$keep" "$tests"
      c1=$(cpu_ticks "$pid")
      nrows=$(wc -l < "$tmp/rb.rows") # tests of this run (some -t names run several)
      cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n=$((n * nrows)) 'BEGIN { printf "%.2f", 1e6 * d / hz / n }')
      while IFS=, read -r test rps p50 p99; do
        echo "$part,$v,$test,$t,$((r + 1)),$rps,$p50,$p99,$cpu" >> "$tmp/rows"
        line+=" $t $test=${rps%.*}"
      done < "$tmp/rb.rows"
    done
    say "$line"
  done
}

stamp=$(date -u +%FT%TZ)
rev=$(git rev-parse --short HEAD 2>/dev/null || echo 'no git')
if [[ $rev != "no git" ]] && ! git diff --quiet HEAD -- src 2>/dev/null; then rev+=" + uncommitted changes in src/"; fi
{
  echo "# aster-proxy bench $stamp  $rev"
  if ((${#targets[@]})); then
    echo "# keep-alive: redis-benchmark -c $CLIENTS -r $KEYSPACE -t $TESTS --csv, -P $PIPELINES, -n ${nreq[*]}; $ROUNDS rounds; targets $(IFS=,; echo "${targets[*]}")"
  fi
  if ((${#ktargets[@]})); then
    echo "# conn/request: redis-benchmark -k 0 -n $CONN_REQUESTS -r $KEYSPACE -t get --csv, -c $CONN_CLIENTS; $ROUNDS rounds; targets $(IFS=,; echo "${ktargets[*]}")"
  fi
  echo "# nutcracker: -v 4; nutcracker-v5: default verbosity (5); aster-t1: thread = 1; aster-t2: thread = 2 (primary + 2 workers)"
  echo "# $(redis-server --version | awk '{print $1, $2, $3}'), $("$NUTCRACKER" --version 2>&1 | head -n 1 || true), node $(node --version), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$tmp/header"
cat "$tmp/header" >&2

warm=$(( ${nreq[0]:-$((CONN_REQUESTS * 10))} / 10 )); ((warm >= 1000)) || warm=1000
say "warm-up: $warm requests per target"
for t in "${used[@]}"; do bench "$t" 1 "$warm" 50 1 get,set; done

: > "$tmp/rows"
for ((i = 0; i < ${#depths[@]}; i++)); do measure P "${depths[$i]}" "${nreq[$i]}"; done
for c in "${kclients[@]}"; do measure C "$c"; done

# --- report: medians over rounds ---------------------------------------------------
report() {
  cat "$tmp/header"
  awk -F, -v order="$ALL_TARGETS" -v nc="$CONN_REQUESTS" '
    function median(list,   a, n, i, j, t) {
      n = split(list, a, " ")
      if (n == 0) return ""
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function ratio(a, b) { return (a in rps && b in rps) ? sprintf("%.2f", median(rps[a]) / median(rps[b])) : "-" }
    function ms(list) { return (list != "") ? sprintf("%.3f", median(list)) : "-" }
    function table(part,   i, j, k, p, ref, d) {
      if (!(part in nparts)) return
      if (part == "P") {
        printf "\nkeep-alive: us/req is the CPU time of the target over a whole redis-benchmark run (all its\n"
        printf "tests) per request: the same for every test of a depth.\n"
        printf "\n%-3s %-5s %-13s %10s %7s %8s %8s %8s %9s %17s\n", "P", "test", "target", "ops/s", "x nut", "x redis",
          "p50 ms", "p99 ms", "us/req", "ops/s min..max"
      } else {
        printf "\nconnection per request (redis-benchmark -k 0 -n %s -t get): ops/s = connections/s; us/conn is\n", nc
        printf "the CPU time of the target per request, that is per connection.\n"
        printf "\n%-3s %-5s %-13s %10s %7s %8s %8s %8s %9s %17s\n", "c", "test", "target", "conn/s", "x nut", "x redis",
          "p50 ms", "p99 ms", "us/conn", "ops/s min..max"
      }
      for (i = 1; i <= nrows; i++) {
        split(rows[i], p, SUBSEP)
        if (p[1] != part) continue
        # the reference: nutcracker -v 4, else nutcracker at its default verbosity
        ref = rows[i] SUBSEP "nutcracker"; if (!(ref in rps)) ref = rows[i] SUBSEP "nutcracker-v5"
        d = rows[i] SUBSEP "redis"
        for (j = 1; j <= nt; j++) {
          k = rows[i] SUBSEP tg[j]
          if (!(k in rps)) continue
          printf "%-3s %-5s %-13s %10.0f %7s %8s %8s %8s %9s %17s\n", p[2], p[3], tg[j], median(rps[k]), ratio(k, ref),
            ratio(k, d), ms(p50[k]), ms(p99[k]), (k in cpu) ? sprintf("%.2f", median(cpu[k])) : "-",
            sprintf("%.0f..%.0f", lo[k], hi[k])
        }
      }
    }
    BEGIN { nt = split(order, tg, ",") }
    {
      row = $1 SUBSEP $2 SUBSEP $3; k = row SUBSEP $4
      rps[k] = rps[k] " " $6; p50[k] = p50[k] " " $7; p99[k] = p99[k] " " $8
      if ($9 != "-") cpu[k] = cpu[k] " " $9
      if (!(k in lo) || $6 + 0 < lo[k]) lo[k] = $6 + 0
      if (!(k in hi) || $6 + 0 > hi[k]) hi[k] = $6 + 0
      if (!(row in seen)) { seen[row] = 1; rows[++nrows] = row }
      nparts[$1] = 1
    }
    END {
      printf "\nMedians over rounds; x nut: ops/s / those of nutcracker -v 4 (of nutcracker-v5 without it),\n"
      printf "x redis: / those of direct Redis (ratios of medians); p50 / p99: medians of redis-benchmark'"'"'s\n"
      printf "percentiles; CPU: utime+stime of redis-server (redis), nutcracker, or the proxy with its workers.\n"
      table("P"); table("C")
    }' "$tmp/rows"
}

if [[ $OUT == - ]]; then
  report
else
  if [[ -z $OUT ]]; then mkdir -p .run; OUT=.run/bench-$(date -u +%Y%m%d-%H%M%S).txt; fi
  report | tee "$OUT"
  echo "report saved to $OUT" >&2
fi
