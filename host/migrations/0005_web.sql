-- What a token may do: `run` (trigger and cancel runs) or `read` (see, never change).
ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'run';

-- Web page sessions: a signed-in browser holds a random session id in an HttpOnly cookie; the
-- store keeps its hash, the token it was opened with (revoking the token ends its sessions)
-- and the CSRF token every form of the session carries.
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
