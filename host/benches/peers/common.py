"""What every peer shares: the step body, the DAG shapes, and how a peer reports.

Each peer file (`dag_luigi.py`, `dag_dagster.py`, `dag_prefect.py`) is run as a fresh process:

    python dag_TOOL.py DAG SETUP

with DAG one of `ALL_DAGS` below and SETUP one of that peer's set-ups. It builds the DAG with the
tool's own API, runs it, and prints one last line `PEER_RESULT {"engine_s": ..., "steps": ...}`:
`engine_s` is the time around the tool's run call alone (after the imports, the DAG definition
and any set-up the tool does before that call), measured in the same process with
`time.perf_counter`; `own_s` is the run's duration as the tool records it, where it does. The
driver (`peers.py`) times the whole process from outside.
"""

import json
import sys
import time

# name -> (shape, number of steps, ms of work per step)
DAGS = {
    "chain40": ("chain", 40, 0),
    "chain40-work": ("chain", 40, 10),
    "fanout1000": ("fanout", 1000, 0),
}
# The driver's unmeasured first run of each tool and set-up: creates its state, warms caches.
WARMUP = {"warmup": ("chain", 2, 0)}
ALL_DAGS = {**DAGS, **WARMUP}


def step(work_ms):
    """The body of every step in every tool: nothing, or sleep `work_ms` milliseconds."""
    if work_ms:
        time.sleep(work_ms / 1000)
    return None


def parse_args(setups):
    if len(sys.argv) != 3 or sys.argv[1] not in ALL_DAGS or sys.argv[2] not in setups:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(ALL_DAGS)} {'|'.join(setups)}")
    shape, n, work_ms = ALL_DAGS[sys.argv[1]]
    return shape, n, work_ms, sys.argv[2]


def report(engine_s, steps, own_s=None):
    """`own_s`: the run's duration as the tool itself records it, where it records one."""
    sys.stdout.flush()
    print("PEER_RESULT " + json.dumps({"engine_s": engine_s, "steps": steps, "own_s": own_s}), flush=True)
