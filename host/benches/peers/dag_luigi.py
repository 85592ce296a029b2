"""The three DAGs in Luigi, run with its local scheduler (`luigi.build(local_scheduler=True)`).

Set-ups:
  local-w1  `workers=1`, Luigi's default: tasks run one at a time in the scheduling process.
  local-w8  `workers=8` (as orch's `--parallel 8`): Luigi forks a process per task.

Luigi decides what to run from targets: each task's output is an empty marker file in a fresh
directory (`PEER_STATE/out-PID`), written after the step body. That file is the only state Luigi
keeps; the local scheduler lives in memory and dies with the process.
"""

import os
import tempfile
import time

import luigi

from common import parse_args, report, step

SETUPS = {"local-w1": 1, "local-w8": 8}


class Step(luigi.Task):
    i = luigi.IntParameter()
    chain = luigi.BoolParameter()
    work_ms = luigi.IntParameter()
    outdir = luigi.Parameter()

    def requires(self):
        if self.chain and self.i > 0:
            return Step(i=self.i - 1, chain=True, work_ms=self.work_ms, outdir=self.outdir)
        return []

    def output(self):
        return luigi.LocalTarget(os.path.join(self.outdir, f"s{self.i}"))

    def run(self):
        step(self.work_ms)
        with self.output().open("w"):
            pass


def main():
    shape, n, work_ms, setup = parse_args(SETUPS)
    outdir = tempfile.mkdtemp(prefix="out-", dir=os.environ.get("PEER_STATE"))
    kw = dict(chain=shape == "chain", work_ms=work_ms, outdir=outdir)
    # The chain is asked for by its last step (Luigi walks `requires` back); the fan-out by all.
    tasks = [Step(i=n - 1, **kw)] if shape == "chain" else [Step(i=i, **kw) for i in range(n)]
    t0 = time.perf_counter()
    result = luigi.build(tasks, local_scheduler=True, workers=SETUPS[setup], detailed_summary=True)
    engine_s = time.perf_counter() - t0
    done = len(os.listdir(outdir))
    if not result.scheduling_succeeded or done != n:
        raise SystemExit(f"luigi: {done}/{n} steps done: {result.summary_text}")
    report(engine_s, done)


if __name__ == "__main__":
    main()
