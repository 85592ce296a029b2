-- The grants each step actually used (connections opened, HTTP origins contacted, TCP
-- destinations connected to): what `orch lock --suggest` compares with the steps' `allow`.
CREATE TABLE grants_used (
    run_id TEXT NOT NULL REFERENCES runs (id),
    step TEXT NOT NULL,
    grant_text TEXT NOT NULL,
    PRIMARY KEY (run_id, step, grant_text)
);
