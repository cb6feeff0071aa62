#!/bin/sh
# The one-shot demo agent: a token from the development issuer, then three intents (a masked
# read, a denied write, a shell command on the SSH target) and the session's audit trail.
# Exits non-zero when an outcome is not the expected one.
set -eu
writ() { node /app/dist/cmd/cli.js "$@"; }
session="demo-$(date +%s)"
WRIT_TOKEN=$(writ token --sub demo-agent --groups analysts,ops --ttl 10m --config "$WRIT_CONFIG")
export WRIT_TOKEN

echo "== a read: email and ssn come back masked"
writ exec --target demo --session "$session" --sql "SELECT name, email, ssn, plan FROM customers ORDER BY id"

echo "== a where-less delete: denied by the policy"
if writ exec --target demo --session "$session" --sql "DELETE FROM customers"; then
  echo "expected a denial" >&2
  exit 1
fi

echo "== a diagnostic on the SSH target"
writ exec --target box --session "$session" --command "uptime"

echo "== done: session $session (writ audit replay --session $session, as an auditor)"
