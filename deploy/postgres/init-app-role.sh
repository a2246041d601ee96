#!/bin/sh
# Run once by the postgres image on a new data directory (mounted in /docker-entrypoint-initdb.d
# by deploy/compose.yaml): the application's role, as deploy/postgres/app-role.sql describes.
set -eu
psql --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_role=alertshare_app -v owner="$POSTGRES_USER" -v database="$POSTGRES_DB" \
  -f /etc/alertshare/app-role.sql
