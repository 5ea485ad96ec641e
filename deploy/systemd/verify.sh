#!/usr/bin/env bash
# Static check of deploy/systemd/forwarder.service with `systemd-analyze verify`,
# usable on a machine (or CI runner) where forwarder is not installed.
#
# `systemd-analyze verify` refuses a unit whose ExecStart= binary is missing,
# so when /opt/forwarder/bin/forwarder does not exist the unit is copied to a
# temporary folder (keeping its name) and ExecStart's binary is replaced by
# /bin/true; every other line is checked as shipped. Any warning about the
# unit (an unknown key, a bad value) fails the check, not only errors.
#
# Usage: deploy/systemd/verify.sh [path/to/forwarder.service]
# Also prints `systemd-analyze security --offline=yes` when available
# (information only; it does not fail the check).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit="${1:-$here/forwarder.service}"
name="$(basename "$unit")"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "verify.sh: systemd-analyze not found (Debian/Ubuntu: apt-get install systemd)" >&2
    exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$unit" "$tmp/$name"

binary="$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$tmp/$name" | head -n1)"
if [[ -z "$binary" ]]; then
    echo "verify.sh: no ExecStart= in $unit" >&2
    exit 1
fi
if [[ ! -x "$binary" ]]; then
    echo "verify.sh: $binary is not installed here; checking with ExecStart=/bin/true"
    sed -i "s|^\(ExecStart=[-@:+!]*\)$binary|\1/bin/true|" "$tmp/$name"
fi

set +e
out="$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$tmp/$name" 2>&1)"
rc=$?
set -e
[[ -n "$out" ]] && printf '%s\n' "$out"

# Warnings about our own unit (e.g. "Unknown key ...") exit 0, so look at them too.
if [[ $rc -ne 0 ]] || grep -qF -- "$name" <<<"$out"; then
    echo "verify.sh: FAIL: $unit (systemd-analyze verify exit $rc)" >&2
    exit 1
fi
echo "verify.sh: OK: $unit passes systemd-analyze verify ($(systemd-analyze --version | head -n1))"

if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    (cd "$tmp" && systemd-analyze security --offline=yes --no-pager "$tmp/$name" 2>/dev/null | tail -n1) || true
fi
