#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL servers for the tests, on free 127.0.0.1 ports, in a temp dir.
#
#   eval "$(scripts/test-services.sh start)"    # starts both, prints `export ...` lines
#   scripts/test-services.sh stop "$LLM_GATEWAY_TEST_SERVICES_DIR"
#
# Internals, also used by tests that stop and restart their own private PostgreSQL:
#   scripts/test-services.sh pg-init DIR PORT    # initdb + start a cluster in DIR/pg
#   scripts/test-services.sh pg-start DIR | pg-stop DIR
#   scripts/test-services.sh redis-start DIR PORT
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user
# (created if missing) and every pg command runs as that user.
set -euo pipefail

die() { echo "test-services: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bin() {
  # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<version>/bin.
  local tool=$1 found
  if command -v "$tool" >/dev/null 2>&1; then command -v "$tool"; return; fi
  found=$(find /usr/lib/postgresql -path "*/bin/$tool" 2>/dev/null | sort -V | tail -n 1)
  [ -n "$found" ] || die "$tool not found (apt-get install postgresql)"
  echo "$found"
}

pg_user() {
  if [ "$(id -u)" != 0 ]; then id -un; return; fi
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
  fi
  echo postgres
}

as_pg() {  # run a command as the cluster's owner
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --init-groups -- "$@"
  else
    "$@"
  fi
}

pg_init() {
  local dir=$1 port=$2 user
  user=$(pg_user)
  mkdir -p "$dir/pg"
  chown "$user" "$dir" "$dir/pg"
  chmod 700 "$dir/pg"
  as_pg "$(pg_bin initdb)" -D "$dir/pg" -U postgres --auth=trust -E UTF8 --no-sync \
    >"$dir/pg-init.log" 2>&1 || { cat "$dir/pg-init.log" >&2; die "initdb failed"; }
  # The socket lives in the cluster dir (not /var/run/postgresql, which may not exist);
  # fsync off: a throwaway cluster never needs to survive a machine crash.
  cat >>"$dir/pg/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/pg'
fsync = off
max_connections = 200
EOF
  pg_start "$dir"
}

pg_start() {
  local dir=$1
  as_pg "$(pg_bin pg_ctl)" -D "$dir/pg" -l "$dir/pg/server.log" -w -t 30 start >/dev/null \
    || { tail -n 20 "$dir/pg/server.log" >&2; die "PostgreSQL did not start"; }
}

pg_stop() {
  local dir=$1
  [ -f "$dir/pg/postmaster.pid" ] || return 0
  as_pg "$(pg_bin pg_ctl)" -D "$dir/pg" -m fast -w -t 30 stop >/dev/null
}

redis_start() {
  local dir=$1 port=$2
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  mkdir -p "$dir/redis"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir/redis" \
    --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" --save "" \
    --appendonly no >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "redis-server did not answer on port $port"
}

redis_stop() {
  local dir=$1
  [ -f "$dir/redis/redis.pid" ] || return 0
  kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
}

case "${1:-start}" in
  start)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/lgw-services.XXXXXX")
    chmod 755 "$dir"
    pg_port=$(free_port)
    pg_init "$dir" "$pg_port"
    redis_port=$(free_port)
    redis_start "$dir" "$redis_port"
    echo "export LLM_GATEWAY_TEST_SERVICES_DIR=$dir"
    echo "export LLM_GATEWAY_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres"
    echo "export LLM_GATEWAY_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
    echo "# stop with: $0 stop $dir"
    ;;
  stop)
    dir=${2:?usage: $0 stop DIR}
    pg_stop "$dir" || true
    redis_stop "$dir"
    rm -rf "$dir"
    ;;
  pg-init) pg_init "${2:?DIR}" "${3:?PORT}" ;;
  pg-start) pg_start "${2:?DIR}" ;;
  pg-stop) pg_stop "${2:?DIR}" ;;
  redis-start) redis_start "${2:?DIR}" "${3:?PORT}" ;;
  *) die "usage: $0 start | stop DIR | pg-init DIR PORT | pg-start DIR | pg-stop DIR" ;;
esac
