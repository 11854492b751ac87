#!/bin/sh
# One-shot job (temporalio/admin-tools): create and migrate Temporal's two Postgres databases.
# Idempotent, so it runs on every `docker compose up`: `create` fails harmlessly when the database
# exists, `setup-schema -v 0.0` leaves a newer schema alone, `update-schema` applies only what is new
# (this is also how an upgrade of TEMPORAL_VERSION migrates the schema).
set -eu

: "${POSTGRES_SEEDS:=postgresql}"
: "${DB_PORT:=5432}"
: "${POSTGRES_USER:=temporal}"
: "${SQL_PASSWORD:?SQL_PASSWORD must be set}"   # read by temporal-sql-tool itself
: "${DBNAME:=temporal}"
: "${VISIBILITY_DBNAME:=temporal_visibility}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

tries=0
until nc -z "$POSTGRES_SEEDS" "$DB_PORT"; do
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "PostgreSQL at $POSTGRES_SEEDS:$DB_PORT never came up" >&2; exit 1; }
  sleep 1
done

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

for pair in "$DBNAME:temporal" "$VISIBILITY_DBNAME:visibility"; do
  db=${pair%%:*}
  dir=${pair#*:}
  sql --db "$db" create >/dev/null 2>&1 && echo "created database $db" || echo "database $db exists"
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$SCHEMA_ROOT/$dir/versioned"
done
echo "Temporal schema is up to date"
