#!/usr/bin/env bash
# Starts the services the distributed tests use, all on this machine: a private PostgreSQL server on
# 127.0.0.1 and a two-node Ray cluster (a head and a second node joined with `ray start --address`).
# Installs nothing: scripts/install-test-packages.sh installs PostgreSQL, pip installs Ray and psycopg2.
#
#     eval "$(scripts/start_test_services.sh)"          # both; prints export lines for the tests
#     scripts/start_test_services.sh postgres           # only PostgreSQL (or: ray)
#     scripts/start_test_services.sh --stop             # stops what this script started
#
# Idempotent: a service this script already started (same NASSCALE_SERVICES_DIR) is reused. Only the
# export lines go to stdout; progress goes to stderr. Settings (environment):
#     NASSCALE_SERVICES_DIR  state folder [/tmp/nasscale-test-services]
#     NASSCALE_PG_PORT       PostgreSQL port [55432]
#     NASSCALE_RAY_PORT      Ray head (GCS) port [46380]
set -euo pipefail

state_dir=${NASSCALE_SERVICES_DIR:-/tmp/nasscale-test-services}
pg_port=${NASSCALE_PG_PORT:-55432}
ray_port=${NASSCALE_RAY_PORT:-46380}
database=nasscale_test
# A loopback test cluster needs no token (Ray >= 2.5x enables token authentication for `ray start` by
# default), and reports no usage statistics. Clients must use the same setting: it is exported below.
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0

log() { echo "start_test_services: $*" >&2; }

port_open() {  # port_open PORT: something listens on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() {  # wait_for_port PORT SECONDS
    local deadline=$((SECONDS + $2))
    until port_open "$1"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

alive() {  # alive PIDFILE: the process recorded there still runs
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_group() {  # stop_group PIDFILE: end the process group this script started (setsid made the pid its leader)
    alive "$1" || { rm -f "$1"; return 0; }
    local pid
    pid=$(cat "$1")
    kill -TERM -- "-$pid" 2>/dev/null || true
    # A Ray node drains for up to 30 s on SIGTERM; a test cluster has nothing worth waiting for.
    for _ in $(seq 6); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$1"
}

# ------------------------------------------------------------------------------------------ PostgreSQL

pg_bin_dir() {
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"  # Debian links only some tools into PATH
        return
    fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] || { log "PostgreSQL is not installed (scripts/install-test-packages.sh installs it)"; exit 1; }
    echo "$found"
}

as_db_user() {  # PostgreSQL refuses to run as root: use the postgres account the Debian package creates
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local bin data=$state_dir/postgres
    bin=$(pg_bin_dir)
    mkdir -p "$state_dir"
    chmod 755 "$state_dir"
    if [ ! -s "$data/PG_VERSION" ]; then
        log "initialising a PostgreSQL cluster in $data"
        mkdir -p "$data"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$data"
        as_db_user "$bin/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
    fi
    if ! as_db_user "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "starting PostgreSQL on 127.0.0.1:$pg_port"
        # Test data is disposable: no fsync. The socket goes in the data folder, not /run/postgresql.
        as_db_user "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $data -c fsync=off -c max_connections=200" >/dev/null
    fi
    if [ -z "$(as_db_user "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]; then
        as_db_user "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres "$database"
    fi
    echo "export NASSCALE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$pg_port/$database"
}

stop_postgres() {
    local data=$state_dir/postgres
    [ -s "$data/PG_VERSION" ] || return 0
    as_db_user "$(pg_bin_dir)/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
}

# ------------------------------------------------------------------------------------------------- Ray

start_ray_node() {  # start_ray_node NAME ARGS...: `ray start --block` in its own process group, recorded
    local name=$1
    shift
    alive "$state_dir/ray-$name.pid" && return 0
    command -v ray >/dev/null || { log "the ray command is missing: pip install 'ray[tune]'"; exit 1; }
    log "starting Ray $name node"
    # --block keeps `ray start` in the foreground as the parent of the node's processes, so that ending its
    # process group ends exactly this node (`ray stop` would stop every Ray node of the machine).
    RAY_worker_niceness=0 setsid ray start --block --num-cpus=1 --disable-usage-stats "$@" \
        >"$state_dir/ray-$name.log" 2>&1 </dev/null &
    echo $! >"$state_dir/ray-$name.pid"
}

start_ray() {
    mkdir -p "$state_dir"
    if ! port_open "$ray_port"; then
        stop_group "$state_dir/ray-worker.pid"  # a worker of a previous head cannot join a new one
        stop_group "$state_dir/ray-head.pid"
    fi
    start_ray_node head --head --port="$ray_port" --node-ip-address=127.0.0.1 --include-dashboard=false \
        --temp-dir="$state_dir/ray"
    wait_for_port "$ray_port" 120 || { log "the Ray head did not open port $ray_port; see $state_dir/ray-head.log"; exit 1; }
    start_ray_node worker --address="127.0.0.1:$ray_port" --node-ip-address=127.0.0.1
    python3 - "127.0.0.1:$ray_port" <<'PYTHON' || { log "the second Ray node did not join; see $state_dir/ray-worker.log"; exit 1; }
import sys
import time

import ray

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + 120
while sum(node["Alive"] for node in ray.nodes()) < 2:
    if time.monotonic() > deadline:
        sys.exit(1)
    time.sleep(0.5)
PYTHON
    echo "export NASSCALE_TEST_RAY_ADDRESS=127.0.0.1:$ray_port"
    echo "export RAY_AUTH_MODE=disabled"
}

stop_ray() {
    stop_group "$state_dir/ray-worker.pid"
    stop_group "$state_dir/ray-head.pid"
}

# ------------------------------------------------------------------------------------------------ main

services=()
stop=false
for argument in "$@"; do
    case $argument in
        --stop) stop=true ;;
        postgres | ray) services+=("$argument") ;;
        *) log "unknown argument $argument (use: [--stop] [postgres] [ray])"; exit 2 ;;
    esac
done
[ ${#services[@]} -gt 0 ] || services=(postgres ray)

for service in "${services[@]}"; do
    if $stop; then "stop_$service"; else "start_$service"; fi
done
