#!/usr/bin/env bash
# Makes the test services answer: PostgreSQL (database "test", user postgres,
# trust auth on loopback) and Redis. Starts them if installed but stopped;
# installs them with apt-get if missing. Exits non-zero if a service cannot be
# made to answer. Addresses come from GORMCACHE_REDIS_ADDR and the host/port
# in GORMCACHE_PG_DSN (defaults 127.0.0.1:6379 and 127.0.0.1:5432); only
# loopback services are ever started or installed.
set -euo pipefail

redis_addr=${GORMCACHE_REDIS_ADDR:-127.0.0.1:6379}
redis_host=${redis_addr%:*}
redis_port=${redis_addr##*:}
pg_dsn=${GORMCACHE_PG_DSN:-host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable}
pg_host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$pg_dsn"); pg_host=${pg_host:-127.0.0.1}
pg_port=$(sed -n 's/.*port=\([^ ]*\).*/\1/p' <<<"$pg_dsn"); pg_port=${pg_port:-5432}
pg_user=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$pg_dsn"); pg_user=${pg_user:-postgres}
pg_db=$(sed -n 's/.*dbname=\([^ ]*\).*/\1/p' <<<"$pg_dsn"); pg_db=${pg_db:-test}

say() { printf 'services: %s\n' "$*" >&2; }
loopback() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }
sudo_() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

redis_answers() {
  # PING over bash's /dev/tcp, so no redis-cli is needed.
  timeout 3 bash -c "exec 3<>/dev/tcp/$redis_host/$redis_port && printf 'PING\r\n' >&3 && read -r -t 2 line <&3 && [[ \$line == +PONG* ]]" 2>/dev/null
}
pg_answers() {
  command -v psql >/dev/null && timeout 5 psql "host=$pg_host port=$pg_port user=$pg_user dbname=$pg_db sslmode=disable connect_timeout=3" -tAc 'select 1' >/dev/null 2>&1
}
apt_install() {
  say "installing $* with apt-get"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  redis_answers && return 0
  loopback "$redis_host" || { say "redis at $redis_addr does not answer (not loopback: not starting it)"; return 1; }
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting redis-server on $redis_host:$redis_port"
  sudo_ mkdir -p /var/lib/redis /var/log/redis
  sudo_ redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis_answers && return 0; sleep 0.1; done
  say "redis did not answer after start"; return 1
}

ensure_pg() {
  pg_answers && return 0
  loopback "$pg_host" || { say "postgres at $pg_host:$pg_port does not answer (not loopback: not starting it)"; return 1; }
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
  fi
  local ver; ver=$(ls /etc/postgresql | sort -V | tail -n1)
  local hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! sudo_ grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    say "allowing trust auth on loopback in $hba"
    sudo_ sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting postgresql $ver"
  sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" main reload || true
  for _ in $(seq 100); do
    if timeout 3 psql "host=$pg_host port=$pg_port user=$pg_user dbname=postgres sslmode=disable connect_timeout=2" -tAc 'select 1' >/dev/null 2>&1; then
      break
    fi
    sleep 0.2
  done
  if ! psql "host=$pg_host port=$pg_port user=$pg_user dbname=postgres sslmode=disable" -tAc "select 1 from pg_database where datname='$pg_db'" 2>/dev/null | grep -q 1; then
    say "creating database $pg_db"
    psql "host=$pg_host port=$pg_port user=$pg_user dbname=postgres sslmode=disable" -qc "create database \"$pg_db\"" || true
  fi
  pg_answers && return 0
  say "postgres did not answer after start"; return 1
}

ok=0
ensure_redis || ok=1
ensure_pg || ok=1
if [[ $ok == 0 ]]; then say "redis $redis_addr and postgres $pg_host:$pg_port/$pg_db answer"; fi
exit $ok
