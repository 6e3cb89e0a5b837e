# Sourced by the install scripts: pinned PyPI tools in their own venvs.
# Needs `fail` defined by the caller.

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

# ensure_venv VENV PACKAGE[extras]==VERSION... : installs into VENV unless every pin is
# already there; prints one line either way. The pip log is VENV.log.
ensure_venv() {
  local venv="$1" spec package version ok=1 python
  shift
  for spec in "$@"; do
    package="${spec%%==*}" version="${spec##*==}"
    package="${package%%\[*}"
    [[ $(installed_version "$venv" "$package") == "$version" ]] || ok=0
  done
  if [[ $ok -eq 1 ]]; then
    echo "venv: $* already in $venv"
    return
  fi
  echo "venv: installing $* into $venv (log: $venv.log)"
  mkdir -p "$(dirname "$venv")"
  if [[ ! -x $venv/bin/python ]]; then
    python="$(pick_python)"
    "$python" -m venv "$venv" || fail "could not create the venv $venv"
  fi
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$@" >"$venv.log" 2>&1; then
    tail -n 20 "$venv.log" >&2
    fail "pip install $* failed; see $venv.log"
  fi
}
