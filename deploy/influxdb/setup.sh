#!/usr/bin/env bash
# Point InfluxDB 2.x checks at forwarder: create (or update) an HTTP
# notification endpoint and a notification rule through the InfluxDB API.
#
# The `influx` CLI has no command for notification endpoints or rules, so this
# script calls the HTTP API (POST/PUT /api/v2/notificationEndpoints and
# POST /api/v2/notificationRules). It needs bash, curl and python3 (for JSON);
# running it again updates the endpoint and leaves an existing rule alone.
#
# Environment:
#   INFLUX_HOST             InfluxDB URL                          (default http://localhost:8086)
#   INFLUX_TOKEN            API token allowed to write notification endpoints and rules (required)
#   INFLUX_ORG              organization name                     (or INFLUX_ORG_ID)
#   INFLUX_ORG_ID           organization ID                       (skips the name lookup)
#   FORWARDER_URL           where InfluxDB sends notifications    (default http://127.0.0.1:9095/influxdb)
#   FORWARDER_INGEST_TOKEN  bearer token forwarder requires; empty = no auth
#   ENDPOINT_NAME           endpoint name                         (default forwarder)
#   RULE_NAME               rule name                             (default "forwarder: check status changes")
#   RULE_EVERY              how often the rule runs               (default 1m)
#   RULE_LEVELS             levels to notify on, space-separated  (default "CRIT WARN INFO OK")
#   RULE_PREVIOUS_LEVEL     previousLevel of each status rule     (default ANY)
#                           ANY: notify only when a series changes to a level (InfluxDB then
#                           uses monitor.stateChanges). Empty: notify every status at those
#                           levels on every run (a filter on _level): with OK included, one
#                           notification per healthy series per RULE_EVERY.
#
# Example:
#   INFLUX_TOKEN=... INFLUX_ORG=my-org FORWARDER_INGEST_TOKEN=... ./setup.sh
set -euo pipefail

: "${INFLUX_HOST:=http://localhost:8086}"
: "${INFLUX_TOKEN:?set INFLUX_TOKEN to an InfluxDB API token}"
: "${FORWARDER_URL:=http://127.0.0.1:9095/influxdb}"
: "${FORWARDER_INGEST_TOKEN:=}"
: "${ENDPOINT_NAME:=forwarder}"
: "${RULE_NAME:=forwarder: check status changes}"
: "${RULE_EVERY:=1m}"
: "${RULE_LEVELS:=CRIT WARN INFO OK}"
: "${RULE_PREVIOUS_LEVEL=ANY}" # no colon: an empty value is kept (every status, every run)
export INFLUX_HOST INFLUX_TOKEN FORWARDER_URL FORWARDER_INGEST_TOKEN ENDPOINT_NAME RULE_NAME RULE_EVERY RULE_LEVELS RULE_PREVIOUS_LEVEL

api() { # api METHOD PATH [JSON-BODY] -> prints the response body; fails on HTTP >= 400
    local method=$1 path=$2 body=${3:-} out status
    local args=(--silent --show-error -X "$method" -w '\n%{http_code}'
        -H "Authorization: Token ${INFLUX_TOKEN}" -H "Accept: application/json")
    if [[ -n "$body" ]]; then
        args+=(-H "Content-Type: application/json" --data-binary "$body")
    fi
    out="$(curl "${args[@]}" "${INFLUX_HOST%/}${path}")"
    status="${out##*$'\n'}"
    out="${out%$'\n'*}"
    if [[ "$status" -ge 400 || "$status" -lt 200 ]]; then
        echo "setup.sh: $method $path: HTTP $status: $out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

json() { # json 'python expression over d (the parsed stdin)'
    python3 -c 'import json, os, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# --- organization
if [[ -z "${INFLUX_ORG_ID:-}" ]]; then
    : "${INFLUX_ORG:?set INFLUX_ORG (name) or INFLUX_ORG_ID}"
    org_q="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$INFLUX_ORG")"
    resp="$(api GET "/api/v2/orgs?org=${org_q}")"
    INFLUX_ORG_ID="$(json 'd["orgs"][0]["id"] if d.get("orgs") else ""' <<<"$resp")"
    if [[ -z "$INFLUX_ORG_ID" ]]; then
        echo "setup.sh: organization '$INFLUX_ORG' not found" >&2
        exit 1
    fi
fi
export INFLUX_ORG_ID

# --- notification endpoint
endpoint_body="$(python3 - <<'PY'
import json, os
body = {
    "orgID": os.environ["INFLUX_ORG_ID"],
    "name": os.environ["ENDPOINT_NAME"],
    "description": "forwarder: relays check notifications to BigPanda",
    "status": "active",
    "type": "http",
    "method": "POST",
    "url": os.environ["FORWARDER_URL"],
    "authMethod": "none",
}
if os.environ.get("FORWARDER_INGEST_TOKEN"):
    body["authMethod"] = "bearer"
    body["token"] = os.environ["FORWARDER_INGEST_TOKEN"]
print(json.dumps(body))
PY
)"

resp="$(api GET "/api/v2/notificationEndpoints?orgID=${INFLUX_ORG_ID}&limit=100")"
existing_endpoint="$(json 'next((e["id"] for e in d.get("notificationEndpoints", []) if e.get("name") == os.environ["ENDPOINT_NAME"]), "")' <<<"$resp")"
if [[ -n "$existing_endpoint" ]]; then
    api PUT "/api/v2/notificationEndpoints/${existing_endpoint}" "$endpoint_body" >/dev/null
    endpoint_id="$existing_endpoint"
    echo "updated notification endpoint '${ENDPOINT_NAME}' (${endpoint_id}) -> ${FORWARDER_URL}"
else
    resp="$(api POST /api/v2/notificationEndpoints "$endpoint_body")"
    endpoint_id="$(json 'd["id"]' <<<"$resp")"
    echo "created notification endpoint '${ENDPOINT_NAME}' (${endpoint_id}) -> ${FORWARDER_URL}"
fi
export endpoint_id

# --- notification rule
resp="$(api GET "/api/v2/notificationRules?orgID=${INFLUX_ORG_ID}&limit=100")"
existing_rule="$(json 'next((r["id"] for r in d.get("notificationRules", []) if r.get("name") == os.environ["RULE_NAME"]), "")' <<<"$resp")"
if [[ -n "$existing_rule" ]]; then
    echo "notification rule '${RULE_NAME}' (${existing_rule}) already exists; left unchanged"
    # A rule made by an older setup.sh has status rules without previousLevel: it sends
    # every status on every run. Say so rather than change a rule someone may have edited.
    every_run="$(json 'any(not s.get("previousLevel") for r in d.get("notificationRules", []) if r.get("name") == os.environ["RULE_NAME"] for s in r.get("statusRules", []))' <<<"$resp")"
    if [[ "$every_run" == "True" && -n "$RULE_PREVIOUS_LEVEL" ]]; then
        echo "setup.sh: warning: that rule has status rules without previousLevel, so it sends" \
            "every status on every run; to send only changes, delete it" \
            "(curl -X DELETE ${INFLUX_HOST%/}/api/v2/notificationRules/${existing_rule}" \
            "-H 'Authorization: Token ...') and run setup.sh again" >&2
    fi
else
    rule_body="$(python3 - <<'PY'
import json, os
levels = os.environ["RULE_LEVELS"].split()
previous = os.environ["RULE_PREVIOUS_LEVEL"]
# InfluxDB turns a status rule into Flux (notification/rule/rule.go): with only
# currentLevel, a filter on _level, so every status at that level is sent on every
# run; with previousLevel, monitor.stateChanges(fromLevel, toLevel), so only a change
# into that level is sent (ANY: from any other level).
status_rules = [
    {"currentLevel": level, **({"previousLevel": previous} if previous else {})}
    for level in levels
]
print(json.dumps({
    "orgID": os.environ["INFLUX_ORG_ID"],
    "name": os.environ["RULE_NAME"],
    "description": "Send every check status change to forwarder",
    "status": "active",
    "type": "http",
    "endpointID": os.environ["endpoint_id"],
    "every": os.environ["RULE_EVERY"],
    "offset": "0s",
    # One status rule per level.
    "statusRules": status_rules,
    "tagRules": [],
}))
PY
)"
    resp="$(api POST /api/v2/notificationRules "$rule_body")"
    rule_id="$(json 'd["id"]' <<<"$resp")"
    if [[ -n "$RULE_PREVIOUS_LEVEL" ]]; then
        sends="changes from ${RULE_PREVIOUS_LEVEL} to ${RULE_LEVELS}"
    else
        sends="every status at ${RULE_LEVELS}, every run"
    fi
    echo "created notification rule '${RULE_NAME}' (${rule_id}): every ${RULE_EVERY}, sends ${sends}"
fi
