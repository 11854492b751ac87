#!/bin/sh
# Runs once, on the first start of an empty data volume (postgres image: /docker-entrypoint-initdb.d).
# Creates the application's own role and database, separate from Temporal's `temporal` and
# `temporal_visibility` databases (which the temporal-schema job creates as the superuser).
set -eu

: "${CPOLAB_DB_PASSWORD:?CPOLAB_DB_PASSWORD must be set}"
: "${CPOLAB_DB_NAME:=cpolab}"
: "${CPOLAB_DB_USER:=cpolab}"

# psql variables (:'pw', :"db") quote the values, so no shell or SQL injection through them.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-postgres}" \
  -v pw="$CPOLAB_DB_PASSWORD" -v db="$CPOLAB_DB_NAME" -v usr="$CPOLAB_DB_USER" <<'SQL'
CREATE ROLE :"usr" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"usr";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
echo "created database ${CPOLAB_DB_NAME} owned by ${CPOLAB_DB_USER}"
