#!/usr/bin/env bash
# Installs the infrastructure linters from PyPI, pinned, into
# ${KIT_CACHE:-/var/cache/pgvector-lambda-kit}/venv-lint, and links them into
# venv-lint/bin: sam (aws-sam-cli, also used by scripts/package.sh), cfn-lint, checkov.
#
# aws-sam-cli and checkov pin different boto3 versions, so each lives in its own
# venv (venv-lint/sam, venv-lint/checkov). Idempotent: a second run only checks
# the versions and prints them.
set -euo pipefail

KIT_CACHE="${KIT_CACHE:-/var/cache/pgvector-lambda-kit}"
LINT="$KIT_CACHE/venv-lint"
SAM_CLI_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
CHECKOV_VERSION="3.3.30"

step() { echo "install-lint-tools: $*"; }
fail() { echo "install-lint-tools: $*" >&2; exit 1; }

# A Python that can make venvs: the system one (python3-venv), else python3 on PATH.
pick_python() {
  local candidate probe
  probe="$(mktemp -d)"
  for candidate in /usr/bin/python3 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -m venv "$probe/venv" >/dev/null 2>&1; then
      rm -rf "$probe"
      echo "$candidate"
      return
    fi
    rm -rf "$probe/venv"
  done
  rm -rf "$probe"
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq python3-venv >/dev/null || fail "apt-get install python3-venv failed (run apt-get update first?)"
    echo /usr/bin/python3
    return
  fi
  fail "no Python that can create a venv: install python3-venv"
}

# installed_version VENV PACKAGE → the installed version, or nothing.
installed_version() {
  [[ -x $1/bin/python ]] || return 0
  "$1/bin/python" -m pip show "$2" 2>/dev/null | sed -n 's/^Version: //p' || true
}

# ensure_venv NAME PACKAGE==VERSION... : (re)installs when any pin differs.
ensure_venv() {
  local name="$1" venv="$LINT/$1" spec package version ok=1
  shift
  for spec in "$@"; do
    package="${spec%%==*}" version="${spec##*==}"
    [[ $(installed_version "$venv" "$package") == "$version" ]] || ok=0
  done
  if [[ $ok -eq 1 ]]; then
    step "$name: $* already in $venv"
    return
  fi
  step "$name: installing $* into $venv (log: $LINT/$name.log)"
  mkdir -p "$LINT"
  [[ -x $venv/bin/python ]] || "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$@" >"$LINT/$name.log" 2>&1; then
    tail -n 20 "$LINT/$name.log" >&2
    fail "pip install $* failed; see $LINT/$name.log"
  fi
}

PYTHON=""
if [[ -z $(installed_version "$LINT/sam" aws-sam-cli) || -z $(installed_version "$LINT/checkov" checkov) ]]; then
  PYTHON="$(pick_python)"
fi
ensure_venv sam "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
ensure_venv checkov "checkov==$CHECKOV_VERSION"

mkdir -p "$LINT/bin"
ln -sfn "$LINT/sam/bin/sam" "$LINT/bin/sam"
ln -sfn "$LINT/sam/bin/cfn-lint" "$LINT/bin/cfn-lint"
ln -sfn "$LINT/checkov/bin/checkov" "$LINT/bin/checkov"

export SAM_CLI_TELEMETRY=0
step "ready in $LINT/bin: $("$LINT/bin/sam" --version), cfn-lint $("$LINT/bin/cfn-lint" --version | awk '{print $2}'), checkov $("$LINT/bin/checkov" --version)"
