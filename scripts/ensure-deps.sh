#!/bin/sh
# ensure-deps.sh - make sure what aster-proxy needs to build, test and benchmark
# is installed. Idempotent; prints nothing when everything is already there.
#
#   npm packages  `npm ci` when node_modules is missing or older than
#                 package-lock.json (`npm install` when there is no lockfile).
#   system tools  redis-server, redis-cli, redis-benchmark (Debian packages
#                 redis-server, redis-tools) and nutcracker (package nutcracker,
#                 installs to /usr/sbin), openssl (the TLS tests' certificates). As root with apt-get they are installed
#                 (`apt-get update` only when the install fails without it). The
#                 system services these packages start (redis on port 6379,
#                 nutcracker) are kept from starting and disabled: our tests and
#                 scripts start their own servers on free ports. Not root: a
#                 message saying what to install, exit 1.
#   with "test"   also promtool (Debian package prometheus; its services, and
#                 those of prometheus-node-exporter, kept from starting too),
#                 which the tests run on deploy/prometheus-alerts.yml.
#
# Usage: sh scripts/ensure-deps.sh [test]   (npm's pretest with "test"; `npm start`
#        and `npm run bench` without)
set -eu

cd "$(dirname "$0")/.."
for_tests=0
[ "${1:-}" = test ] && for_tests=1

say() { echo "ensure-deps: $*" >&2; }

# --- npm packages ------------------------------------------------------------
# npm rewrites node_modules/.package-lock.json on every install: it is the
# freshest record of when node_modules was last brought in line with the lockfile.
if [ -f package-lock.json ]; then
  marker=node_modules/.package-lock.json
  [ -f "$marker" ] || marker=node_modules
  if [ ! -d node_modules ] || [ package-lock.json -nt "$marker" ]; then
    say "node_modules missing or older than package-lock.json: npm ci"
    npm ci --no-audit --no-fund
  fi
elif [ ! -d node_modules ] || [ package.json -nt node_modules ]; then
  say "no package-lock.json: npm install"
  npm install --no-audit --no-fund
fi

# --- system tools ------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }
missing=""
for tool in redis-server redis-cli redis-benchmark; do
  have "$tool" || missing="$missing $tool"
done
# /usr/sbin is often not on a non-root user's PATH
have nutcracker || [ -x /usr/sbin/nutcracker ] || missing="$missing nutcracker"
# openssl makes the TLS tests' certificates
have openssl || missing="$missing openssl"
# promtool checks the alert rules (tests only)
if [ "$for_tests" = 1 ]; then have promtool || missing="$missing promtool"; fi
[ -z "$missing" ] && exit 0

PACKAGES="redis-server redis-tools nutcracker openssl"
if [ "$for_tests" = 1 ]; then PACKAGES="$PACKAGES prometheus"; fi
if [ "$(id -u)" -ne 0 ]; then
  say "missing:$missing"
  say "install them as root, e.g. on Debian/Ubuntu:"
  say "  sudo apt-get install -y $PACKAGES"
  say "  sudo systemctl disable --now redis-server nutcracker   # free port 6379; tests start their own servers"
  say "then run this again (or run it as root and it installs them itself)."
  exit 1
fi
if ! have apt-get; then
  say "missing:$missing, and there is no apt-get here."
  say "install redis-server, redis-cli, redis-benchmark (Redis 7) and nutcracker (twemproxy 0.5) by hand."
  exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
newly=""  # packages this run installs: only their services are stopped below
for pkg in $PACKAGES; do installed "$pkg" || newly="$newly $pkg"; done

# Keep the packages' postinst scripts from starting their services at all:
# invoke-rc.d and deb-systemd-invoke ask /usr/sbin/policy-rc.d, and 101 means
# "not allowed". Only if there is none already (Docker images ship one).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, written by aster-proxy scripts/ensure-deps.sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "missing:$missing: apt-get install $PACKAGES"
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y $PACKAGES; }
if ! apt_install; then
  say "install failed; running apt-get update and trying again"
  apt-get update
  apt_install
fi

# stop_service NAME PIDFILE: stop and disable a service a package just installed,
# whatever init system (if any) this machine has.
stop_service() {
  name=$1 pidfile=$2
  if have systemctl; then
    # disable works without a running systemd (it edits symlinks); stop needs one
    systemctl disable "$name" >/dev/null 2>&1 || true
    if [ -d /run/systemd/system ]; then systemctl stop "$name" >/dev/null 2>&1 || true; fi
  fi
  if have update-rc.d; then update-rc.d "$name" disable >/dev/null 2>&1 || true; fi
  # the init script directly: invoke-rc.d would ask policy-rc.d, which says no
  if [ -x "/etc/init.d/$name" ] && [ ! -d /run/systemd/system ]; then
    "/etc/init.d/$name" stop >/dev/null 2>&1 || true
  fi
  # last resort, no init system at all: the daemon the package started
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    case $pid in
      '' | *[!0-9]*) ;;
      *) if [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ]; then kill "$pid" 2>/dev/null || true; fi ;;
    esac
  fi
}
for pkg in $newly; do
  case $pkg in
    redis-server) stop_service redis-server /run/redis/redis-server.pid ;;
    nutcracker) stop_service nutcracker /run/nutcracker/nutcracker.pid ;;
    prometheus)
      stop_service prometheus /run/prometheus/prometheus.pid
      stop_service prometheus-node-exporter /run/prometheus/prometheus-node-exporter.pid
      ;;
  esac
done

for tool in redis-server redis-cli redis-benchmark; do
  have "$tool" || { say "$tool still missing after the install"; exit 1; }
done
have nutcracker || [ -x /usr/sbin/nutcracker ] || { say "nutcracker still missing after the install"; exit 1; }
say "installed:$missing"
