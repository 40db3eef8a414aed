-- F5's duplicates are found in memory (session::directory): a session that lived through a
-- restart does not exist yet (its chat connection is lost, so it is ended), so no stored
-- record was ever read. Its table goes.
DROP TABLE inbound_mails;
