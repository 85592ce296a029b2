"""The three DAGs in Dagster: one op per step, ordered by `Nothing` dependencies (no data passed).

Set-ups:
  in-process    `job.execute_in_process()`: Dagster's in-process executor, every op in this
                process one after another, on the in-memory ephemeral instance it uses by default.
  multiprocess  `execute_job(reconstructable(job), DagsterInstance.get())`: the job's default
                executor (`multi_or_in_process_executor`, multiprocess mode) with its defaults:
                every op in its own spawned Python process, at most `cpu_count()` at once (2 on
                the project's machine), on a SQLite instance in `DAGSTER_HOME` (the driver points
                it at a directory of its own; a persistent instance is what this executor needs).
"""

import os
import sys
import time

import dagster as dg

from common import ALL_DAGS, parse_args, report, step

SETUPS = ("in-process", "multiprocess")


def build_job(name):
    shape, n, work_ms = ALL_DAGS[name]
    ops = []
    for i in range(n):
        ins = {"after": dg.In(dg.Nothing)} if shape == "chain" and i > 0 else {}

        @dg.op(name=f"s{i}", ins=ins, out=dg.Out(dg.Nothing))
        def the_op():
            step(work_ms)

        ops.append(the_op)

    @dg.job(name=name.replace("-", "_"))
    def the_job():
        prev = None
        for op in ops:
            prev = op(after=prev) if prev is not None else op()
            if shape != "chain":
                prev = None

    return the_job


def job_from_env():
    """What the multiprocess executor's child processes rebuild the job from."""
    return build_job(os.environ["PEER_DAG"])


def main():
    _, n, _, setup = parse_args(SETUPS)
    os.environ["PEER_DAG"] = name = sys.argv[1]
    if setup == "in-process":
        job = build_job(name)
        # What execute_in_process() makes by itself when given none; passed to read the run stats.
        with dg.DagsterInstance.ephemeral() as instance:
            t0 = time.perf_counter()
            result = job.execute_in_process(instance=instance)
            engine_s = time.perf_counter() - t0
            stats = instance.get_run_stats(result.run_id)
    else:
        recon = dg.reconstructable(job_from_env)
        with dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            result = dg.execute_job(recon, instance=instance)
            engine_s = time.perf_counter() - t0
            stats = instance.get_run_stats(result.run_id)
    done = sum(1 for e in result.all_events if e.event_type_value == "STEP_SUCCESS")
    if not result.success or done != n:
        raise SystemExit(f"dagster: run failed, {done}/{n} steps succeeded")
    own_s = stats.end_time - stats.start_time if stats.start_time and stats.end_time else None
    report(engine_s, done, own_s)


if __name__ == "__main__":
    main()
