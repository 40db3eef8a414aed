-- The e-mail user's chat mails delivered over MSRP (F5), by Message-ID: a mail sent again
-- (its sender got no 250 before a crash, and retries) is answered 250 and not delivered
-- twice. Deleted with the session.
CREATE TABLE inbound_mails (
    session_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    delivered_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, message_id)
);
