# Sourced by generate.sh and test.sh: make sure .venv exists and holds exactly
# requirements-dev.txt, reinstalling only when that file (or this one) changed.
# Sets VENV and puts its bin/ first on PATH.
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OFFPEAK_PY_VENV:-$_here/.venv}"
PYTHON="${PYTHON:-python3}"
_stamp="$VENV/.requirements.sha256"
_want="$(cat "$_here/requirements-dev.txt" "$_here/scripts/venv.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
    echo "setting up $VENV from requirements-dev.txt" >&2
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -r "$_here/requirements-dev.txt"
    echo "$_want" > "$_stamp"
fi
export PATH="$VENV/bin:$PATH"
unset _here _stamp _want
