#!/bin/bash
# The demo target's data, run once by the postgres image on an empty data directory
# (/docker-entrypoint-initdb.d): the writ_demo database, deploy/local/setup.sql in it (roles
# writ_demo_read and writ_demo_write, the seeded customers table), and the two roles'
# passwords from the compose secrets (the worker logs in over the network).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c 'CREATE DATABASE writ_demo'
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname writ_demo -f /etc/writ/setup.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname writ_demo \
  -v read_pw="$(cat /run/secrets/pg-read.password)" -v write_pw="$(cat /run/secrets/pg-write.password)" <<'SQL'
ALTER ROLE writ_demo_read PASSWORD :'read_pw';
ALTER ROLE writ_demo_write PASSWORD :'write_pw';
SQL
