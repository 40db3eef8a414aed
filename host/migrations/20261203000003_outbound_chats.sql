-- F4's outbound spool (issue 15): each chat message of the CPM side the IWF answered MSRP 200
-- for, kept until its mail is taken, refused for good, or given up. A session freed while
-- some of its messages wait keeps its row (phase "closed") and its thread until the last.
CREATE TABLE outbound_chats (
    session_id TEXT NOT NULL,
    -- RFC 4975 Message-ID: unique in its session, so a SEND taken twice is spooled once.
    msrp_message_id TEXT NOT NULL,
    -- Mailing order within the session.
    seq BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    -- The random part of the mail's Message-ID, chosen once: a mail sent again after a
    -- crash carries the same Message-ID, so the e-mail side can tell it is a copy.
    mail_nonce TEXT NOT NULL,
    -- Unix ms past which a message the mail servers keep refusing (4yz) is given up.
    give_up_at BIGINT NOT NULL,
    taken_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, msrp_message_id)
);
