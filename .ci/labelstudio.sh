#!/usr/bin/env bash
# Install Label Studio into its own virtualenv for the annotation round-trip test
# (tests/test_annotation.py, tests/labelstudio.py) and print the path of its executable:
#
#   export LABEL_STUDIO_BIN="$(bash .ci/labelstudio.sh [VENV])"     # VENV default: .ci/.venv-labelstudio
#
# Its own virtualenv because label-studio (through opencv) pins numpy < 2.3 and the project needs
# numpy 2.4: the project never imports it, the tests start its server and talk to its REST API.
# Everything but the path goes to stderr. Idempotent: an existing venv with the right version is
# reused. It also prepares the migrated, empty database the test helper copies for every server
# (Label Studio runs ~260 migrations on a new database: about a minute of CPU, paid here once).
set -euo pipefail

VERSION="1.23.2"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$REPO/.ci/.venv-labelstudio}"
mkdir -p "$VENV"
VENV="$(cd "$VENV" && pwd)"
PY="${PYTHON:-python3}"
BIN="$VENV/bin/label-studio"
# must match TEMPLATE_DIRNAME and DB_NAME in tests/labelstudio.py
TEMPLATE="$VENV/dataset_platform-labelstudio-template"
DB="label_studio.sqlite3"

log() { echo "labelstudio.sh: $*" >&2; }

installed() {
  [ -x "$BIN" ] && "$VENV/bin/python" -c \
    "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$VERSION')" 2>/dev/null
}

if installed; then
  log "label-studio $VERSION already installed in $VENV"
else
  start=$(date +%s)
  log "installing label-studio $VERSION into $VENV"
  "$PY" -m venv "$VENV" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q "label-studio==$VERSION" >&2
  installed || { log "label-studio $VERSION did not install"; exit 1; }
  log "installed in $(( $(date +%s) - start )) s"
  rm -f "$TEMPLATE/$DB"  # a new install gets a new database
fi

if [ ! -f "$TEMPLATE/$DB" ]; then
  start=$(date +%s)
  log "migrating an empty Label Studio database (once)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/data" "$work/home/data" "$work/home/config" "$work/home/cache"
  dead="http://127.0.0.1:9"  # offline: any outbound request fails at once
  # `label-studio version` migrates the database, prints the versions and exits
  ( cd "$work" && env -u DJANGO_SETTINGS_MODULE \
      HOME="$work/home" XDG_DATA_HOME="$work/home/data" XDG_CONFIG_HOME="$work/home/config" \
      XDG_CACHE_HOME="$work/home/cache" LABEL_STUDIO_BASE_DATA_DIR="$work/data" DJANGO_DB=sqlite \
      SECRET_KEY="template-only" SENTRY_DSN= FRONTEND_SENTRY_DSN= COLLECT_ANALYTICS=false \
      LATEST_VERSION_CHECK=false CONVERTER_DOWNLOAD_RESOURCES=false FEATURE_FLAGS_OFFLINE=true \
      http_proxy="$dead" https_proxy="$dead" HTTP_PROXY="$dead" HTTPS_PROXY="$dead" \
      all_proxy="$dead" ALL_PROXY="$dead" no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost \
      "$BIN" version ) >"$work/version.log" 2>&1 || { cat "$work/version.log" >&2; log "migration failed"; exit 1; }
  mkdir -p "$TEMPLATE"
  cp "$work/data/$DB" "$TEMPLATE/.$DB.tmp"
  mv "$TEMPLATE/.$DB.tmp" "$TEMPLATE/$DB"
  log "database ready in $(( $(date +%s) - start )) s"
fi

echo "$BIN"
