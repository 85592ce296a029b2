-- Runs, step attempts, log lines and audited denials. Same schema on SQLite and PostgreSQL:
-- text ids, BIGINT milliseconds since the Unix epoch, no autoincrement.
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_path TEXT NOT NULL,
    inputs TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);

CREATE TABLE step_runs (
    run_id TEXT NOT NULL REFERENCES runs (id),
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    plugin TEXT NOT NULL,
    status TEXT NOT NULL,
    outputs TEXT,
    error TEXT,
    error_kind TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (run_id, step, attempt)
);

CREATE TABLE logs (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq BIGINT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE audit (
    run_id TEXT NOT NULL,
    step TEXT NOT NULL,
    ts BIGINT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX audit_by_run ON audit (run_id);
