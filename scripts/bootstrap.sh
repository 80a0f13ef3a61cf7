#!/usr/bin/env bash
# Set up (or check) the project's virtualenv at <repo>/.venv. Safe to run any number of times:
# pip only runs when pyproject.toml, constraints.txt or requirements/*.txt changed since the last
# successful install (a hash stamp in .venv/), so a second run takes about a second.
# Needs only Python >= 3.11 and gcc. See docs/setup.md.
set -euo pipefail

# The main job needs the package alone; --dev adds what the tests, notebooks and plots need.
EXTRAS=""
case "${1:-}" in
    "") ;;
    --dev) EXTRAS="[dev]" ;;
    *) echo "usage: bash scripts/bootstrap.sh [--dev]" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.faceinsight-deps.sha256"
LANDMARKS="requirements/landmarks.txt"

say() { echo "[bootstrap] $*"; }
# pip with the constraints file, quiet, never prompting (CI has no stdin). The filter drops the one
# harmless warning pip repeats for every package a configured local index lacks; exit status is pip's.
# --no-compile: Python compiles the modules it imports on first use instead of pip compiling all of them
# (fresh set-up 129 s -> 104 s; the first run's imports take 10 s longer; docs/results.md "The main job").
pip_install() {
    "$VENV/bin/python" -m pip install -q --no-input --no-compile -c constraints.txt "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

if [[ ! -x "$VENV/bin/python" ]]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "[bootstrap] ERROR: $PYTHON is missing or older than Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

# Everything that decides what pip installs; names are hashed too, so adding a file counts.
shopt -s nullglob
dep_files=(pyproject.toml constraints.txt requirements/*.txt)
shopt -u nullglob
hash="$(sha256sum "${dep_files[@]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"

# The stamp records the hash and what was installed; a --dev install also serves the plain one.
if [[ "$have" == "$hash[dev]" || "$have" == "$hash$EXTRAS" ]]; then
    say "dependencies up to date"
else
    rm -f "$STAMP"
    # The constraints file pins torch to the 2.13.0 CPU wheel; without it pip pulls GBs of CUDA wheels.
    say "installing faceinsight$EXTRAS (pip, may take a few minutes on a fresh machine)"
    pip_install -e ".$EXTRAS"
    if [[ -f "$LANDMARKS" ]]; then
        # --no-deps: mediapipe's metadata pins numpy<2 and pulls jax; the file lists what it really needs.
        say "installing optional landmarks extra ($LANDMARKS)"
        pip_install --no-deps -r "$LANDMARKS"
    fi
    echo "$hash$EXTRAS" >"$STAMP"
fi

# PyPI's torchvision is a CUDA build; this makes it load on the CPU torch (no-op when not needed).
"$VENV/bin/python" scripts/fix_torchvision.py
say "ready: $VENV"
