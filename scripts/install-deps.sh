#!/usr/bin/env bash
# Installs what the local stack needs on Debian 12, idempotently:
#   1. build tools and PostgreSQL 15 headers (apt, only what is missing);
#   2. pgvector 0.8 into the system PostgreSQL 15, built from Debian 13's source package;
#   3. PgBouncer >= 1.21 under $KIT_CACHE/pgbouncer, built from Debian 13's source package;
#   4. cargo-lambda (with ziglang), pinned, in a Python venv under $KIT_CACHE/venv.
# Builds are cached outside the repo, in $KIT_CACHE; a second run only checks and prints.
# Debian 13's sources are fetched with a private apt configuration: the system's sources stay untouched.
set -euo pipefail

KIT_CACHE="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}"
PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
PGVECTOR_SERIES="0.8"
PGBOUNCER_MIN="1.21"
SOURCE_SUITE="trixie"
DEFAULT_MIRROR="http://deb.debian.org/debian"
ARCHIVE_KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
APT_PACKAGES=(
  "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
  libevent-dev libssl-dev pkg-config build-essential dpkg-dev python3-venv
)
LOG_DIR="$KIT_CACHE/logs"
# cargo-lambda cross-compiles the functions (`kit build`, `sam build`); ziglang is its linker.
# Pinned like the lint tools: a venv with other versions (an older unpinned install) is
# brought to these. Bump both together after reading cargo-lambda's release notes.
CARGO_LAMBDA_PINS=("cargo-lambda==1.9.2" "ziglang==0.17.1")

step() { printf '==> %s\n' "$*"; }
fail() { printf 'install-deps: %s\n' "$*" >&2; exit 1; }
# shellcheck source=lib/venv.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/venv.sh"

# Runs a build command with its output in a log file; on failure shows the log's tail.
run_logged() {
  local log="$1"; shift
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    fail "'$*' failed; full log: $log"
  fi
}

require_root() {
  [[ $EUID -eq 0 ]] || fail "run as root (installs apt packages and pgvector into the system PostgreSQL)"
}

# --- 1. apt packages -------------------------------------------------------

missing_apt_packages() {
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || echo "$pkg"
  done
}

install_apt_packages() {
  local missing
  mapfile -t missing < <(missing_apt_packages)
  if ((${#missing[@]} == 0)); then
    step "apt packages: already installed"
    return
  fi
  step "apt packages: installing ${missing[*]} (log: $LOG_DIR/apt.log)"
  run_logged "$LOG_DIR/apt.log" apt-get update
  run_logged "$LOG_DIR/apt.log" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# --- Debian 13 sources through a private apt configuration -----------------

# The Debian mirror the system already uses for its own release (deb822 or one-line format).
system_debian_mirror() {
  local codename uri=""
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    # deb822: stanzas separated by blank lines; pick the one whose Suites lists our codename.
    uri="$(awk -v want="$codename" '
      function flush() { if (found && uri != "" && !done) { print uri; done = 1; exit } found = 0; uri = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) found = 1 }
      END { flush() }' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [[ -z $uri && -r /etc/apt/sources.list ]]; then
    uri="$(awk -v want="$codename" '
      $1 == "deb" { sub(/\[[^]]*\][[:space:]]*/, ""); if ($3 == want) { print $2; exit } }' /etc/apt/sources.list)"
  fi
  echo "${uri:-$DEFAULT_MIRROR}"
}

# apt-get with a private source list, lists and cache under $KIT_CACHE/apt.
private_apt() {
  local dir="$KIT_CACHE/apt"
  apt-get \
    -o Dir::Etc::SourceList="$dir/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$dir/lists" \
    -o Dir::Cache="$dir/cache" \
    "$@"
}

refresh_source_index() {
  local dir="$KIT_CACHE/apt" mirror
  [[ -r $ARCHIVE_KEYRING ]] || fail "missing $ARCHIVE_KEYRING (package debian-archive-keyring)"
  mirror="$(system_debian_mirror)"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  echo "deb-src [signed-by=$ARCHIVE_KEYRING] $mirror $SOURCE_SUITE main" >"$dir/sources.list"
  run_logged "$LOG_DIR/apt-source.log" private_apt update
}

# Fetches and unpacks a Debian 13 source package into $KIT_CACHE/src/<package>; prints the tree's path.
fetch_source_package() {
  local package="$1" dest="$KIT_CACHE/src/$1"
  rm -rf "$dest" && mkdir -p "$dest"
  # apt downloads as its sandbox user when it can write there (otherwise it warns and downloads as root).
  if id _apt >/dev/null 2>&1; then chown _apt "$dest"; fi
  refresh_source_index
  (cd "$dest" && run_logged "$LOG_DIR/apt-source.log" private_apt source "$package")
  find "$dest" -mindepth 1 -maxdepth 1 -type d -name "$package-*" | head -n 1
}

# --- 2. pgvector -----------------------------------------------------------

installed_pgvector_version() {
  local control
  control="$("$PG_CONFIG" --sharedir)/extension/vector.control"
  [[ -r $control ]] || return 0
  sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$control"
}

install_pgvector() {
  local version tree log="$LOG_DIR/pgvector.log"
  version="$(installed_pgvector_version)"
  if [[ $version == "$PGVECTOR_SERIES".* && -e "$("$PG_CONFIG" --pkglibdir)/vector.so" ]]; then
    step "pgvector: $version already installed in PostgreSQL $PG_MAJOR"
    return
  fi
  tree="$(find "$KIT_CACHE/src/pgvector" -mindepth 1 -maxdepth 1 -type d -name "pgvector-$PGVECTOR_SERIES.*" 2>/dev/null | head -n 1 || true)"
  if [[ -z $tree ]]; then
    step "pgvector: fetching the $SOURCE_SUITE source package (log: $LOG_DIR/apt-source.log)"
    tree="$(fetch_source_package pgvector)"
    [[ $(basename "$tree") == "pgvector-$PGVECTOR_SERIES".* ]] || fail "expected pgvector $PGVECTOR_SERIES.x from $SOURCE_SUITE, got '$tree'"
  fi
  step "pgvector: building $(basename "$tree") and installing it into PostgreSQL $PG_MAJOR (log: $log)"
  # OPTFLAGS= as in Debian's own build: no -march=native, pgvector dispatches on CPU features at run time.
  run_logged "$log" make -C "$tree" PG_CONFIG="$PG_CONFIG" OPTFLAGS= -j"$(nproc)"
  run_logged "$log" make -C "$tree" PG_CONFIG="$PG_CONFIG" OPTFLAGS= install
  step "pgvector: $(installed_pgvector_version) installed"
}

# --- 3. PgBouncer ----------------------------------------------------------

pgbouncer_bin() { echo "$KIT_CACHE/pgbouncer/bin/pgbouncer"; }

built_pgbouncer_version() {
  [[ -x $(pgbouncer_bin) ]] || return 0
  "$(pgbouncer_bin)" --version 2>/dev/null | sed -n 's/^PgBouncer \([0-9.]*\).*/\1/p' | head -n 1 || true
}

version_at_least() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1) == "$2" ]]; }

install_pgbouncer() {
  local version tree log="$LOG_DIR/pgbouncer.log"
  version="$(built_pgbouncer_version)"
  if [[ -n $version ]] && version_at_least "$version" "$PGBOUNCER_MIN"; then
    step "pgbouncer: $version already built in $KIT_CACHE/pgbouncer"
    return
  fi
  step "pgbouncer: fetching the $SOURCE_SUITE source package (log: $LOG_DIR/apt-source.log)"
  tree="$(fetch_source_package pgbouncer)"
  [[ -n $tree ]] || fail "apt-get source pgbouncer produced no source tree"
  step "pgbouncer: building $(basename "$tree") into $KIT_CACHE/pgbouncer (log: $log)"
  (
    cd "$tree"
    run_logged "$log" ./configure --prefix="$KIT_CACHE/pgbouncer" --with-openssl
    run_logged "$log" make -j"$(nproc)"
    run_logged "$log" make install
  )
  version="$(built_pgbouncer_version)"
  if [[ -z $version ]] || ! version_at_least "$version" "$PGBOUNCER_MIN"; then
    fail "built PgBouncer '${version:-?}' is older than $PGBOUNCER_MIN"
  fi
  step "pgbouncer: $version built"
}

# --- 4. Python tools -------------------------------------------------------

install_python_tools() {
  local venv="$KIT_CACHE/venv" version
  step "python tools: ${CARGO_LAMBDA_PINS[*]} in $venv"
  ensure_venv "$venv" "${CARGO_LAMBDA_PINS[@]}"
  command -v cargo >/dev/null || fail "cargo is not on PATH: install the Rust toolchain (rustup) first"
  version="$(PATH="$venv/bin:$PATH" cargo lambda --version)" || fail "'cargo lambda --version' fails; see $venv.log"
  step "python tools: $version in $venv"
}

main() {
  require_root
  mkdir -p "$LOG_DIR"
  install_apt_packages
  install_pgvector
  install_pgbouncer
  install_python_tools
}

main "$@"
