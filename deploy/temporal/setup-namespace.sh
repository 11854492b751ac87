#!/bin/sh
# One-shot job (temporalio/admin-tools): register the namespace and cpolab's custom search attributes,
# then wait until the server accepts queries on them, so the API and workers never start a workflow
# the server would reject. Idempotent: safe on every `docker compose up`.
#
# The attribute list must match app.provisioning_models.SEARCH_ATTRIBUTES (tests/test_compose.py checks).
set -eu

: "${TEMPORAL_ADDRESS:=temporal:7233}"
: "${NAMESPACE:=default}"
: "${NAMESPACE_RETENTION:=72h}"
export TEMPORAL_ADDRESS
SEARCH_ATTRIBUTES="CpoOrg=Keyword CpoTemplate=Keyword CpoState=Keyword CpoId=Int"

retry() {  # retry <what> <command…>: up to 60 attempts, 2 s apart
  what=$1
  shift
  n=0
  until "$@" >/dev/null 2>&1; do
    n=$((n + 1))
    [ "$n" -lt 60 ] || { echo "gave up waiting for $what" >&2; "$@"; exit 1; }
    sleep 2
  done
}

retry "the Temporal frontend" temporal operator cluster health

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  temporal operator namespace create --namespace "$NAMESPACE" --retention "$NAMESPACE_RETENTION"
fi
# A new namespace reaches the server's namespace cache a few seconds after it is created.
retry "namespace $NAMESPACE" temporal operator search-attribute list --namespace "$NAMESPACE"

existing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
for sa in $SEARCH_ATTRIBUTES; do
  name=${sa%%=*}
  type=${sa#*=}
  if printf '%s\n' "$existing" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
  fi
done

# Visible to the frontend's query validation = usable by StartWorkflowExecution and upserts.
retry "the search attributes to be queryable" temporal workflow count --namespace "$NAMESPACE" \
  --query 'CpoOrg = "probe" AND CpoTemplate = "probe" AND CpoState = "probe" AND CpoId = 0'
echo "namespace $NAMESPACE is ready: $SEARCH_ATTRIBUTES"
