#!/usr/bin/env bash
# orch against its peers (Luigi, Dagster, Prefect) on the same three DAGs: a 40-step no-op
# chain, a 40-step chain with 10 ms of work per step, a 1000-step no-op fan-out. Each DAG is run
# REPS times with every tool in turn (alternating, so drift hits all alike), each run a fresh
# process; medians and ratios to orch go to stdout and target/peers/results.md.
#
#   cargo build --release              # this script builds nothing: it runs ${ORCH}
#   bash host/benches/peers/run.sh     # REPS=1 ONLY=orch,luigi SKIP=dagster/multiprocess:fanout1000 ...
#
# The peers come from PyPI at the versions pinned in requirements.txt (dependencies constrained
# by requirements.lock), into a virtual environment of their own: ${PEERS_VENV:-target/peers-venv},
# (re)installed only when those files change. Settings: see the top of peers.py.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cd "$root"

ORCH="${ORCH:-target/release/orch}"
if [[ ! -x "$ORCH" ]]; then
    echo "run.sh: no orch binary at $ORCH: run \`cargo build --release\` first (or set ORCH=path)" >&2
    exit 2
fi
ORCH="$(cd "$(dirname "$ORCH")" && pwd)/$(basename "$ORCH")"

PYTHON="${PYTHON:-python3}"
venv="${PEERS_VENV:-target/peers-venv}"
stamp="$venv/.requirements.sha256"
want="$(cat "$here/requirements.txt" "$here/requirements.lock" | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "run.sh: installing the peers into $venv (requirements changed or first run)" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/requirements.txt" -c "$here/requirements.lock"
    echo "$want" > "$stamp"
fi

export ORCH
exec "$venv/bin/python" "$here/peers.py"
