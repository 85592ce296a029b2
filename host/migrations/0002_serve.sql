-- Service mode: what triggered a run (schedule, token, delivery), which step outputs can be
-- reused when a run resumes, schedule ticks, API tokens and webhook deliveries.
ALTER TABLE runs ADD COLUMN trigger_detail TEXT;
ALTER TABLE runs ADD COLUMN started_at BIGINT;
CREATE INDEX runs_by_status ON runs (status, created_at);

-- 1 when `outputs` are the real outputs (nothing was masked or truncated): a resumed run can
-- hand them to later steps without running the step again.
ALTER TABLE step_runs ADD COLUMN resumable INTEGER NOT NULL DEFAULT 0;

CREATE TABLE schedule_ticks (
    workflow TEXT NOT NULL,
    schedule INTEGER NOT NULL,
    cron TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    run_id TEXT,
    PRIMARY KEY (workflow, schedule, fire_at)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE webhook_deliveries (
    workflow TEXT NOT NULL,
    delivery TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (workflow, delivery)
);
