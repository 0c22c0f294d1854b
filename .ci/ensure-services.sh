#!/usr/bin/env bash
# Make sure the services the test suite needs are reachable:
#   PostgreSQL on 127.0.0.1:$PG_PORT (default 5432), superuser `postgres`, trust auth
#   Redis      on 127.0.0.1:$REDIS_PORT (default 6379)
#
# For each service: if it already answers on its port, use it and change nothing.
# Otherwise install it with apt-get if the binaries are missing (needs root), then
# start it: Redis as a daemonised redis-server without persistence; PostgreSQL as the
# Debian cluster configured for that port if there is one and it accepts trust auth,
# else as a throwaway cluster in $PG_CI_DIR run by the `postgres` OS user.
# Exits non-zero with a message on stderr if a service cannot be had; never skips.
# Idempotent: a second run finds both listening and does nothing.
set -euo pipefail

HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
PG_CI_DIR=${PG_CI_DIR:-/tmp/quantdesk-ci-pg-$PG_PORT}
REDIS_LOG=${REDIS_LOG:-/tmp/quantdesk-ci-redis-$REDIS_PORT.log}
WAIT_SECONDS=${WAIT_SECONDS:-30}

APT_UPDATED=0
PG_BIN=""

log() { printf '%s\n' "$*"; }
die() {
    printf 'ensure-services: ERROR: %s\n' "$*" >&2
    exit 1
}

# probe KIND PORT: 0 = the service answers on HOST:PORT, 1 = nothing listens,
# 2 = something listens but does not speak the protocol. Pure python3 (stdlib), so it
# works on a bare machine without pg_isready/redis-cli.
probe() {
    python3 - "$1" "$HOST" "$2" <<'PY'
import socket
import struct
import sys

kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    sock = socket.create_connection((host, port), timeout=2)
except OSError:
    sys.exit(1)
try:
    sock.settimeout(3)
    if kind == "redis":
        # Inline PING; "+PONG" normally, "-NOAUTH"/"-DENIED"/"-LOADING" still means Redis.
        sock.sendall(b"PING\r\n")
        ok = sock.recv(1) in (b"+", b"-")
    else:
        # SSLRequest (what pg_isready-like probes send): a server answers 'S' or 'N'.
        sock.sendall(struct.pack("!ii", 8, 80877103))
        ok = sock.recv(1) in (b"S", b"N")
except OSError:
    ok = False
finally:
    sock.close()
sys.exit(0 if ok else 2)
PY
}

probe_state() { # prints ok|closed|foreign
    local rc=0
    probe "$1" "$2" || rc=$?
    case $rc in
        0) echo ok ;;
        1) echo closed ;;
        *) echo foreign ;;
    esac
}

# wait_for KIND PORT: poll until the service answers, at most WAIT_SECONDS.
wait_for() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)); do
        if probe "$1" "$2"; then
            return 0
        fi
        sleep 0.5
    done
    probe "$1" "$2"
}

apt_install() {
    [[ $EUID -eq 0 ]] || die "need root to run 'apt-get install $*' (or install it yourself)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get is not available; install $* yourself"
    export DEBIAN_FRONTEND=noninteractive
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "ensure-services: apt-get update"
        apt-get update -q || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "ensure-services: apt-get install $*"
    apt-get install -y -q --no-install-recommends "$@" || die "apt-get install $* failed"
}

# ---------------------------------------------------------------- Redis

ensure_redis() {
    local where="$HOST:$REDIS_PORT" state
    state=$(probe_state redis "$REDIS_PORT")
    if [[ $state == ok ]]; then
        log "redis: already listening on $where"
        return 0
    fi
    [[ $state == closed ]] || die "something that is not Redis is listening on $where"

    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
        command -v redis-server >/dev/null 2>&1 || die "redis-server still not found after apt-get install"
        # The package's maintainer scripts may have started the service already.
        if probe redis "$REDIS_PORT"; then
            log "redis: installed redis-server; the package started it on $where"
            return 0
        fi
    fi

    redis-server --port "$REDIS_PORT" --bind "$HOST" --save '' --appendonly no \
        --daemonize yes --dir /tmp --logfile "$REDIS_LOG" ||
        die "redis-server failed to start on $where (log: $REDIS_LOG)"
    if ! wait_for redis "$REDIS_PORT"; then
        tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
        die "redis-server was started but $where did not answer within ${WAIT_SECONDS}s (log: $REDIS_LOG)"
    fi
    log "redis: started redis-server on $where (no persistence, log: $REDIS_LOG)"
}

# ---------------------------------------------------------------- PostgreSQL

find_pg_bin() { # sets PG_BIN to the newest dir holding initdb + pg_ctl, or ""
    local d best=""
    local -a dirs=()
    shopt -s nullglob
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl ]] && dirs+=("$d")
    done
    shopt -u nullglob
    if ((${#dirs[@]})); then
        best=$(printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1)
    elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        best=$(dirname "$(command -v pg_ctl)")
    fi
    PG_BIN=$best
}

# as_pg CMD...: run CMD as the `postgres` OS user (PostgreSQL refuses to run as root),
# from / so an unreadable working directory does not trip initdb/postgres up.
as_pg() {
    if [[ $EUID -ne 0 ]]; then
        (cd / && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- "$@")
    elif command -v su >/dev/null 2>&1; then
        (cd / && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
    else
        die "neither runuser nor su is available to run PostgreSQL as the postgres user"
    fi
}

# pg_trust_check: 0 = postgres@HOST:PG_PORT gets in without a password,
# 1 = refused, 2 = cannot tell (no psql).
pg_trust_check() {
    local psql=""
    if [[ -n $PG_BIN && -x $PG_BIN/psql ]]; then
        psql=$PG_BIN/psql
    elif command -v psql >/dev/null 2>&1; then
        psql=$(command -v psql)
    else
        return 2
    fi
    PGCONNECT_TIMEOUT=5 "$psql" -X -w -q -At -h "$HOST" -p "$PG_PORT" -U postgres -d postgres \
        -c 'select 1' >/dev/null 2>&1 || return 1
}

# try_debian_cluster: start the Debian cluster configured for PG_PORT, if any.
# 0 = it now serves PG_PORT with trust auth; 1 = not usable (stopped again if we started it).
try_debian_cluster() {
    command -v pg_ctlcluster >/dev/null 2>&1 && command -v pg_lsclusters >/dev/null 2>&1 || return 1
    local ver name port _rest rc started trust
    while read -r ver name port _rest; do
        [[ $name == main && $port == "$PG_PORT" && -d /etc/postgresql/$ver/main ]] || continue
        rc=0
        pg_ctlcluster --skip-systemctl-redirect "$ver" main start || rc=$?
        # 0 = we started it; 2 = it was already running. Anything else: unusable.
        case $rc in
            0) started=1 ;;
            2) started=${PG_INSTALLED_NOW:-0} ;;
            *)
                log "postgres: 'pg_ctlcluster $ver main start' failed (exit $rc); falling back to a throwaway cluster" >&2
                continue
                ;;
        esac
        if ! wait_for postgres "$PG_PORT"; then
            log "postgres: Debian cluster $ver/main does not answer on $HOST:$PG_PORT; falling back to a throwaway cluster" >&2
            if [[ $started == 1 ]]; then
                pg_ctlcluster --skip-systemctl-redirect "$ver" main stop || true
            fi
            continue
        fi
        trust=0
        pg_trust_check || trust=$?
        if [[ $trust == 1 ]]; then
            log "postgres: Debian cluster $ver/main refuses password-less postgres@$HOST (no trust auth); falling back to a throwaway cluster" >&2
            if [[ $started == 1 ]]; then
                pg_ctlcluster --skip-systemctl-redirect "$ver" main stop || true
                continue
            fi
            die "Debian cluster $ver/main listens on $HOST:$PG_PORT without trust auth and was not started by this script; not stopping it"
        fi
        log "postgres: started Debian cluster $ver/main on $HOST:$PG_PORT"
        return 0
    done < <(pg_lsclusters -h 2>/dev/null || true)
    return 1
}

start_throwaway_cluster() {
    local dir=$PG_CI_DIR major have opts
    major=$("$PG_BIN/pg_ctl" --version | sed -n 's/.*PostgreSQL) \([0-9]*\).*/\1/p')
    if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres ||
            die "could not create the postgres OS user"
    fi
    # Reuse an earlier throwaway cluster of the same major version; otherwise start fresh.
    if [[ -f $dir/PG_VERSION ]]; then
        have=$(<"$dir/PG_VERSION")
        if [[ $have != "$major" ]]; then
            [[ $(basename "$dir") == quantdesk-ci-pg* ]] ||
                die "$dir holds a PostgreSQL $have cluster, need $major; remove it or set PG_CI_DIR"
            rm -rf "$dir"
        fi
    fi
    if [[ ! -f $dir/PG_VERSION ]]; then
        if [[ -e $dir ]] && [[ -n $(ls -A "$dir") ]]; then
            [[ $(basename "$dir") == quantdesk-ci-pg* ]] ||
                die "$dir is not empty and not a cluster; remove it or set PG_CI_DIR"
            rm -rf "$dir"
        fi
        mkdir -p "$dir"
        chmod 700 "$dir"
        [[ $EUID -ne 0 ]] || chown postgres:postgres "$dir"
        if ! as_pg "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1; then
            # C.UTF-8 is missing on older C libraries; the plain C locale does as well for tests.
            as_pg "$PG_BIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C >>"$dir.initdb.log" 2>&1 || {
                cat "$dir.initdb.log" >&2
                die "initdb failed for $dir"
            }
        fi
    fi
    [[ $EUID -ne 0 ]] || chown -R postgres:postgres "$dir"
    opts="-p $PG_PORT -c listen_addresses=$HOST -c fsync=off -k /tmp"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" -o "$opts" -w -t "$WAIT_SECONDS" -l "$dir/log" start >/dev/null; then
        tail -n 30 "$dir/log" >&2 2>/dev/null || true
        die "pg_ctl could not start the throwaway cluster in $dir (log: $dir/log)"
    fi
    wait_for postgres "$PG_PORT" ||
        die "throwaway cluster in $dir started but $HOST:$PG_PORT did not answer within ${WAIT_SECONDS}s (log: $dir/log)"
    log "postgres: started throwaway cluster in $dir on $HOST:$PG_PORT (PostgreSQL $major, trust auth, log: $dir/log)"
}

ensure_postgres() {
    local where="$HOST:$PG_PORT" state trust=0
    state=$(probe_state postgres "$PG_PORT")
    if [[ $state == ok ]]; then
        log "postgres: already listening on $where"
        find_pg_bin
        pg_trust_check || trust=$?
        if [[ $trust == 1 ]]; then
            log "postgres: WARNING: postgres@$where needs a password (no trust auth); tests may fail to connect" >&2
        fi
        return 0
    fi
    [[ $state == closed ]] || die "something that is not PostgreSQL is listening on $where"

    find_pg_bin
    PG_INSTALLED_NOW=0
    if [[ -z $PG_BIN ]]; then
        apt_install postgresql
        PG_INSTALLED_NOW=1
        find_pg_bin
        [[ -n $PG_BIN ]] || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin after apt-get install postgresql"
    fi

    if try_debian_cluster; then
        return 0
    fi
    start_throwaway_cluster
}

command -v python3 >/dev/null 2>&1 || die "python3 is required"
ensure_postgres
ensure_redis
