-- The sessions the IWF answered 200 for (issue 15): each is stored before its 200 OK goes
-- out, and deleted when it is freed. Plain SQL common to SQLite and PostgreSQL.
CREATE TABLE sessions (
    -- The MSRP session id: the session's id in logs, mail tokens and GET /sessions.
    id TEXT PRIMARY KEY NOT NULL,
    call_id TEXT NOT NULL,
    local_tag TEXT NOT NULL,
    -- Where the dialog stands: awaiting-ack, invited, live, ending.
    phase TEXT NOT NULL,
    -- The INVITE as received: the session's facts, offer and identities are re-read from it.
    invite BLOB NOT NULL,
    -- The dialog and what the IWF answered (JSON, session::durable).
    state TEXT NOT NULL,
    -- When an invitation expires (Unix ms), while the e-mail user has not answered.
    expires_at BIGINT,
    updated_at BIGINT NOT NULL,
    UNIQUE (call_id, local_tag)
);

-- What a session's mails said (addresses, Message-IDs, the thread's last mail): written by
-- the mail side once its first mail is taken, before the session's 200 OK for F2.
CREATE TABLE mail_threads (
    session_id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
