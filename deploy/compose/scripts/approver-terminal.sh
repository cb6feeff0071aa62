#!/bin/sh
# The terminal approver (`docker compose attach approver`; detach with Ctrl-P Ctrl-Q). Its NATS
# login comes from the environment (the terminal approver reads no config file): the password
# from its compose secret. Each vote gets a fresh approver token from the development issuer,
# as `writ login --print --fresh` would give one from a real identity provider.
set -eu
WRIT_NATS_PASSWORD=$(cat /run/secrets/nats-password)
export WRIT_NATS_PASSWORD
export WRIT_TOKEN_COMMAND="node /app/dist/cmd/cli.js token --approver --sub ${WRIT_APPROVER_SUB:-erin} --groups approvers --ttl 5m --config /etc/writ/agent.yaml"
exec node /app/dist/approver/main.js terminal
