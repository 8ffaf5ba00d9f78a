#!/usr/bin/env bash
# Creates the Python venv holding the compatibility oracle (official driver + cryptoconditions).
# Usage: vectors/setup.sh [VENV_DIR]   (default: .venv at the repo root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-"$here/../.venv"}
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-deps.txt"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$here/requirements.txt"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# pysha3 (the driver's hash import) cannot build on 3.11; hashlib's sha3_256 is the same function.
echo 'from hashlib import sha3_256  # noqa: F401  (shim for pysha3)' > "$site/sha3.py"
"$venv/bin/python" -c 'import bigchaindb_driver, cryptoconditions; print("oracle venv ready:", bigchaindb_driver.__version__)'
