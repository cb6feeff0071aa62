#!/bin/sh
# accounts.conf reads each role's password from the server's environment: fill it from the
# compose secrets (files), so no password is written in docker-compose.yml or an image.
set -eu
for role in agent broker worker approver auditor operator; do
  var="WRIT_$(echo "$role" | tr a-z A-Z)_PASSWORD"
  export "$var=$(cat "/run/secrets/nats-$role.password")"
done
exec nats-server -c /etc/nats/nats.conf "$@"
