"""The three DAGs in Prefect 3: one flow, one task call per step.

Set-up:
  ephemeral  Prefect's default with no `PREFECT_API_URL`: the flow starts a temporary local API
             server (ephemeral mode) on the SQLite database in `PREFECT_HOME` (the driver points
             it at a directory of its own) and stops it at exit. The chains call the task
             `n` times in order (each call waits for its result); the fan-out `.submit()`s all
             `n` calls to the flow's default task runner, `ThreadPoolTaskRunner` (no worker limit
             unless `PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS` is set), then waits for them.
"""

import time

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.futures import wait

from common import parse_args, report, step

SETUPS = ("ephemeral",)


@task
def s(work_ms):
    return step(work_ms)


@flow
def chain(n: int, work_ms: int) -> int:
    for _ in range(n):
        s(work_ms)
    return n


@flow
def fanout(n: int, work_ms: int) -> int:
    futures = [s.submit(work_ms) for _ in range(n)]
    done, not_done = wait(futures)
    if not_done or any(f.state.is_failed() for f in done):
        raise RuntimeError("some tasks did not succeed")
    return len(done)


def main():
    shape, n, work_ms, _ = parse_args(SETUPS)
    the_flow = chain if shape == "chain" else fanout
    t0 = time.perf_counter()
    state = the_flow(n, work_ms, return_state=True)
    engine_s = time.perf_counter() - t0
    done = state.result() if state.is_completed() else 0
    if done != n:
        raise SystemExit(f"prefect: {done}/{n} steps done ({state})")
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    own_s = (run.end_time - run.start_time).total_seconds() if run.start_time and run.end_time else None
    report(engine_s, done, own_s)


if __name__ == "__main__":
    main()
