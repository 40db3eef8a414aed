-- F5's inbound spool (issue 15): the e-mail user's chat mails answered 250, as the MSRP
-- SENDs they become (one row per part: the text, then each attachment carried), kept until
-- delivered or bounced. A delivered mail's rows stay, bodies emptied, until its session is
-- freed: the same mail sent again (its sender saw no 250 before a crash) is found by its
-- Message-ID and not delivered twice.
CREATE TABLE inbound_chats (
    session_id TEXT NOT NULL,
    -- The mail's Message-ID (a generated one when it had none).
    mail_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    parts INTEGER NOT NULL,
    -- Delivery order within the session.
    seq BIGINT NOT NULL,
    msrp_message_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    -- The reports the SENDs ask for (the policy's msrp-reports when taken).
    success_report BOOLEAN NOT NULL,
    failure_report TEXT NOT NULL,
    -- Where a bounce goes (the envelope's MAIL FROM; none for <>), what it names.
    return_path TEXT,
    recipient TEXT NOT NULL,
    subject TEXT,
    -- Unix ms past which a mail the chat does not take is bounced.
    give_up_at BIGINT NOT NULL,
    delivered BOOLEAN NOT NULL,
    taken_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, mail_id, part)
);
