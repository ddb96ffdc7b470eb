#!/usr/bin/env bash
# Makes a PostgreSQL with wal_level = logical answer for the change-feed
# tests: a second cluster of the installed PostgreSQL (named "logical", on the
# loopback port of GORMCACHE_PG_LOGICAL_DSN, default 5433), created with
# pg_createcluster if missing and reused otherwise, with trust auth (incl.
# replication) on local/loopback connections only, and a database "test".
# The main cluster's configuration is never touched. Exits non-zero if the
# cluster cannot be made to answer.
set -euo pipefail

dsn=${GORMCACHE_PG_LOGICAL_DSN:-host=127.0.0.1 port=5433 user=postgres dbname=test sslmode=disable}
host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$dsn"); host=${host:-127.0.0.1}
port=$(sed -n 's/.*port=\([^ ]*\).*/\1/p' <<<"$dsn"); port=${port:-5433}
user=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$dsn"); user=${user:-postgres}
db=$(sed -n 's/.*dbname=\([^ ]*\).*/\1/p' <<<"$dsn"); db=${db:-test}
name=logical

say() { printf 'logical-pg: %s\n' "$*" >&2; }
sudo_() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
psql_() { timeout 10 psql "host=$host port=$port user=$user dbname=$1 sslmode=disable connect_timeout=3" "${@:2}"; }
answers() {
  command -v psql >/dev/null && [[ $(psql_ "$db" -tAc 'show wal_level' 2>/dev/null) == logical ]]
}

answers && exit 0
[[ $host == 127.0.0.1 || $host == localhost || $host == ::1 ]] || { say "$host:$port does not answer (not loopback: not starting it)"; exit 1; }
if ! command -v pg_createcluster >/dev/null; then
  say "installing postgresql with apt-get"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
fi
ver=$(ls /etc/postgresql | sort -V | tail -n1)
conf=/etc/postgresql/$ver/$name
if [[ ! -d $conf ]]; then
  say "creating cluster $ver/$name on port $port"
  sudo_ pg_createcluster "$ver" "$name" --port "$port" -- --auth-local=trust --auth-host=trust >/dev/null
fi
# Settings go to a conf.d file of this cluster only (pg_createcluster's
# postgresql.conf includes conf.d).
sudo_ mkdir -p "$conf/conf.d"
sudo_ tee "$conf/conf.d/gormcache-logical.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
wal_sender_timeout = 30s
max_slot_wal_keep_size = -1
CONF
hba=$conf/pg_hba.conf
if ! sudo_ grep -q '^# gormcache-logical' "$hba"; then
  echo "logical-pg: allowing trust auth (incl. replication) on local and loopback connections in $hba"
  sudo_ sed -i '1i # gormcache-logical: test cluster, loopback only\nlocal all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nhost replication all ::1/128 trust' "$hba"
fi
say "starting cluster $ver/$name"
if sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" status >/dev/null 2>&1; then
  sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" restart
else
  sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
fi
for _ in $(seq 100); do
  psql_ postgres -tAc 'select 1' >/dev/null 2>&1 && break
  sleep 0.2
done
if ! psql_ postgres -tAc "select 1 from pg_database where datname='$db'" 2>/dev/null | grep -q 1; then
  say "creating database $db"
  psql_ postgres -qc "create database \"$db\""
fi
answers && { say "$host:$port/$db answers with wal_level = logical"; exit 0; }
say "cluster $ver/$name did not answer with wal_level = logical"; exit 1
