#!/bin/sh
# Idempotent: safe to run on every deployment.
set -eu
# Kubernetes creates the topics from KafkaTopic resources (replication 3) instead: CREATE_TOPICS=0.
if [ "${CREATE_TOPICS:-1}" = 1 ]; then
  python -m mm_shared.kafka "$KAFKA_BOOTSTRAP_SERVERS"
fi
INTAKE_DATABASE_URL="$DATABASE_URL" intake migrate
GEO_ROUTER_DATABASE_URL="$DATABASE_URL" geo-router migrate
NOTIFIER_DATABASE_URL="$DATABASE_URL" notifier migrate
if [ "${SEED_LEIPZIG:-1}" = 1 ]; then
  GEO_ROUTER_DATABASE_URL="$DATABASE_URL" geo-router load --if-empty /app/data/leipzig/jurisdiction.yaml
fi
