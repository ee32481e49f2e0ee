#!/usr/bin/env bash
# Installs and starts what the local stack and the tests need, on Debian or Ubuntu, as root
# (or with sudo). Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# PostgreSQL with PostGIS.
if [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  echo "setup: installing PostgreSQL"
  apt_install postgresql
fi
PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
if [ ! -e "/usr/share/postgresql/$PG_VERSION/extension/postgis.control" ]; then
  echo "setup: installing PostGIS for PostgreSQL $PG_VERSION"
  apt_install "postgresql-$PG_VERSION-postgis-3"
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if ! pg_lsclusters -h | grep -q .; then
    $SUDO pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  CLUSTER=$(pg_lsclusters -h | head -1 | awk '{print $1" "$2}')
  echo "setup: starting PostgreSQL cluster $CLUSTER"
  # shellcheck disable=SC2086
  $SUDO pg_ctlcluster --skip-systemctl-redirect $CLUSTER start || $SUDO pg_ctlcluster $CLUSTER start
fi
for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
# The services log in as postgres/postgres over TCP; give the role that password unless the
# server already lets us in (trust auth, as on the development machines).
if ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
  echo "setup: setting the local postgres role's password"
  $SUDO -u postgres psql -q -c "ALTER USER postgres PASSWORD 'postgres'" 2>/dev/null \
    || runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'"
fi

# Prometheus (with promtool, which the tests run) for `make up`; the package's own service would
# take port 9090, which the local stack's Prometheus uses, so it is stopped and left disabled.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "setup: installing Prometheus"
  apt_install --no-install-recommends prometheus
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# kubectl renders the Kubernetes manifests (`kubectl kustomize`) in the tests; Debian ships it
# as kubernetes-client. Debian 12's is kubectl 1.20, whose kustomize (v2) predates the syntax of
# deploy/kubernetes (kustomize v4+, kubectl 1.21+): there, install a newer kubectl instead.
if ! command -v kubectl >/dev/null; then
  echo "setup: installing kubectl"
  apt_install kubernetes-client
fi
KUBECTL_MINOR=$(kubectl version --client -o json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+"))' || echo 0)
if [ "${KUBECTL_MINOR:-0}" -lt 21 ]; then
  echo "setup: warning: kubectl 1.21 or newer is needed to render deploy/kubernetes (found 1.${KUBECTL_MINOR})" >&2
fi

# Python 3.11 and uv, then the workspace's locked dependencies.
if ! command -v python3.11 >/dev/null; then
  echo "setup: installing Python 3.11"
  apt_install python3.11 python3.11-venv
fi
if ! command -v uv >/dev/null && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "setup: installing uv"
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  python3 -m pip install -q uv 2>/dev/null || python3 -m pip install -q --break-system-packages uv
  command -v pyenv >/dev/null && pyenv rehash || true
fi
if command -v uv >/dev/null; then UV=(uv); else UV=(python3 -m uv); fi
# Bytecode compiled once at install: where PYTHONDONTWRITEBYTECODE is set (as on our CI
# machines), every service start and test process otherwise compiles its imports again.
"${UV[@]}" sync --locked --python "$(command -v python3.11)" -q --compile-bytecode

# Web's front-end libraries (Leaflet, Leaflet.markercluster) from npm, pinned by
# services/web/package-lock.json, copied to where web serves them (no CDN at run time).
if ! command -v npm >/dev/null; then
  echo "setup: installing Node.js and npm"
  apt_install nodejs npm
fi
WEB=services/web
if [ ! -f "$WEB/node_modules/.package-lock.json" ] || ! cmp -s "$WEB/package-lock.json" "$WEB/node_modules/.mm-installed-lock"; then
  echo "setup: installing web's front-end libraries (npm ci)"
  (cd "$WEB" && npm ci --no-audit --no-fund --ignore-scripts -q >/dev/null && cp package-lock.json node_modules/.mm-installed-lock)
fi
sh "$WEB/vendor.sh" "$WEB/node_modules" "$WEB/src/web/static/vendor"

# Chromium for the browser tests (pytest-playwright drives /usr/bin/chromium; Playwright's own
# browser download is not used).
if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Chromium for the browser tests"
  apt_install chromium
fi
