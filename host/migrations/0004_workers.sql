-- Scale-out: the steps workers claim (one row from a run's start to the step's end), the
-- workers themselves, named leases (the scheduler's), and which worker ran each attempt.
CREATE TABLE step_queue (
    run_id TEXT NOT NULL REFERENCES runs (id),
    step TEXT NOT NULL,
    plugin TEXT NOT NULL,
    -- The labels a worker needs, as a sorted JSON array (`[]`: any worker taking untagged work).
    runs_on TEXT NOT NULL,
    priority INTEGER NOT NULL,
    -- Needs not decided yet, and how many of the decided ones failed.
    needs_left INTEGER NOT NULL,
    needs_failed INTEGER NOT NULL,
    -- When the step may be claimed; NULL while it waits for its needs.
    ready_at BIGINT,
    -- The last attempt claimed; its number is the lease token that fences its writes.
    attempt INTEGER NOT NULL,
    lease_owner TEXT,
    lease_token BIGINT,
    lease_until BIGINT,
    -- The worker holding real outputs (with secrets) this step reads.
    affinity TEXT,
    cancelled INTEGER NOT NULL,
    PRIMARY KEY (run_id, step)
);
-- Claims walk this index in order and stop at their batch size.
CREATE INDEX step_queue_ready ON step_queue (priority DESC, ready_at);
CREATE INDEX step_queue_owner ON step_queue (lease_owner);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    labels TEXT NOT NULL,
    untagged INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    draining INTEGER NOT NULL,
    stopped_at BIGINT
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until_at BIGINT NOT NULL
);

ALTER TABLE step_runs ADD COLUMN worker TEXT;
-- 1: queued until no other run of its schedule is active (`overlap = "queue"`, catch-up).
ALTER TABLE runs ADD COLUMN wait_group INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
-- The next log sequence number of a run's claimed steps: taken in the transaction that writes
-- the lines, so numbers follow commit order across workers.
ALTER TABLE runs ADD COLUMN log_seq BIGINT NOT NULL DEFAULT 0;
UPDATE runs SET log_seq = COALESCE((SELECT MAX(seq) + 1 FROM logs WHERE logs.run_id = runs.id), 0);
