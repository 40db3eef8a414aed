#!/usr/bin/python3
"""The e-mail user's SMTP server for tests: aiosmtpd on loopback.

Stores every accepted mail as DIR/mail-N.eml plus DIR/mail-N.json (MAIL FROM and its
parameters as sent, RCPT TO list, the client's address, whether the session was TLS), and DIR/quit-N.json when a
client says QUIT. Prints "READY PORT" on stdout once it listens (PORT: the port bound, the
one the system chose with --port 0).

Run with Debian's /usr/bin/python3 (python3-aiosmtpd is importable by that one only).

  recipient_server.py --port N --dir DIR [--host 127.0.0.1]
      [--deliverby [MIN]]        advertise DELIVERBY (RFC 2852) and accept BY=
      [--deliverby-tls-only]     ... but only in the EHLO reply after STARTTLS
      [--starttls CERT KEY]      offer STARTTLS (RFC 3207) with that certificate (PEM)
      [--refuse-starttls]        ... but answer 454 4.7.0 to it
      [--break-starttls]         ... but answer 220 and close instead of the handshake
      [--inject-after-starttls]  ... but send a 250 right after the 220 (response injection)
      [--refuse-greeting]        greet with 554 (5.2.4.2.4 step 3) and take only QUIT
      [--refuse-rcpt ADDR]...    550 5.1.1 at RCPT TO for ADDR (repeatable)
      [--refuse-data]            451 4.3.0 after the message data
      [--refuse-data-for SECONDS] ... but only for that long after the start (a server that
                                 recovers); refused-data.json counts the mails refused
      [--delay-mail SECONDS]     wait that long before answering each MAIL FROM
      [--close-after-data]       close the connection (no reply) soon after each accepted mail,
                                 as a server dropping an idle client does
      [--max-connections N]      greet connections beyond N open at once with 421 and close
                                 them, as Postfix's smtpd_client_connection_count_limit does;
                                 connections.json holds the most seen open at once and the
                                 number refused
"""

import argparse
import asyncio
import itertools
import json
import os
import ssl
import time

from aiosmtpd.smtp import SMTP

COUNTER = itertools.count(1)
CONNECTIONS = {"open": 0, "peak": 0, "refused": 0}
REFUSED_DATA = {"mails": 0}


def write_json(directory, name, value):
    path = os.path.join(directory, name)
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


class Handler:
    def __init__(self, args):
        self.args = args

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        tls_only = self.args.deliverby_tls_only and session.ssl is None
        if self.args.deliverby is not None and not tls_only:
            line = "250-DELIVERBY" + (f" {self.args.deliverby}" if self.args.deliverby else "")
            responses.insert(len(responses) - 1, line)
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.args.refuse_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.refuse_data:
            return "451 4.3.0 Try again later"
        if time.monotonic() < self.args.refuse_data_until:
            REFUSED_DATA["mails"] += 1
            write_json(self.args.dir, "refused-data.json", REFUSED_DATA)
            return "451 4.3.0 Try again later"
        n = next(COUNTER)
        with open(os.path.join(self.args.dir, f"mail-{n}.eml"), "wb") as f:
            f.write(envelope.original_content)
        write_json(self.args.dir, f"mail-{n}.json", {
            "mail_from": envelope.mail_from,
            "mail_args": getattr(server, "raw_mail_args", ""),
            "rcpt_tos": envelope.rcpt_tos,
            "peer": list(session.peer),
            "helo": session.host_name,
            "tls": session.ssl is not None,
        })
        if self.args.close_after_data:
            asyncio.get_running_loop().call_later(0.2, server.transport.close)
        return "250 2.0.0 OK queued"

    async def handle_QUIT(self, server, session, envelope):
        write_json(self.args.dir, f"quit-{next(COUNTER)}.json", {"peer": list(session.peer)})
        return "221 2.0.0 Bye"


class RecipientSMTP(SMTP):
    """aiosmtpd answers 555 to unknown MAIL parameters: take BY= off when DELIVERBY is on."""

    def __init__(self, handler, args, **kw):
        super().__init__(handler, **kw)
        self.args = args
        self.raw_mail_args = ""
        self.counted = False

    def connection_made(self, transport):
        limit = self.args.max_connections
        if limit is not None and CONNECTIONS["open"] >= limit:
            CONNECTIONS["refused"] += 1
            write_json(self.args.dir, "connections.json", CONNECTIONS)
            transport.write(b"421 4.7.0 mx.test Error: too many connections\r\n")
            transport.close()
            return
        self.counted = True
        CONNECTIONS["open"] += 1
        CONNECTIONS["peak"] = max(CONNECTIONS["peak"], CONNECTIONS["open"])
        write_json(self.args.dir, "connections.json", CONNECTIONS)
        super().connection_made(transport)

    def connection_lost(self, exc):
        if self.counted:
            self.counted = False
            CONNECTIONS["open"] -= 1
            super().connection_lost(exc)

    async def smtp_MAIL(self, arg):
        self.raw_mail_args = arg or ""
        if self.args.delay_mail:
            await asyncio.sleep(self.args.delay_mail)
        if arg and self.args.deliverby is not None:
            by = [p for p in arg.split() if p.upper().startswith("BY=")]
            minimum = int(self.args.deliverby) if self.args.deliverby else 0
            # RFC 2852 4.1: a return-mode by-time below min-by-time is refused.
            for p in by:
                time, _, mode = p[3:].partition(";")
                if mode[:1].upper() == "R" and int(time) < minimum:
                    await self.push(f"501 5.5.4 BY time {time} is below the minimum {minimum}")
                    return
            arg = " ".join(p for p in arg.split() if not p.upper().startswith("BY="))
        await super().smtp_MAIL(arg)

    async def smtp_STARTTLS(self, arg):
        if self.args.refuse_starttls:
            await self.push("454 4.7.0 TLS not available due to temporary reason")
        elif self.args.break_starttls:
            await self.push("220 2.0.0 Ready to start TLS")
            self.transport.close()
        elif self.args.inject_after_starttls:
            # One write, as a man in the middle appending to the reply would send it.
            self.transport.write(b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n")
        else:
            await super().smtp_STARTTLS(arg)


async def refuse(reader, writer):
    """RFC 5321 3.1: a 554 greeting, then only QUIT is answered (503 to the rest)."""
    writer.write(b"554 5.3.2 No SMTP service here\r\n")
    await writer.drain()
    while line := await reader.readline():
        if line.strip().upper() == b"QUIT":
            writer.write(b"221 2.0.0 Bye\r\n")
            await writer.drain()
            break
        writer.write(b"503 5.5.1 Bad sequence of commands\r\n")
        await writer.drain()
    writer.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--deliverby", nargs="?", const="", default=None)
    p.add_argument("--refuse-greeting", action="store_true")
    p.add_argument("--refuse-rcpt", action="append", default=[])
    p.add_argument("--refuse-data", action="store_true")
    p.add_argument("--refuse-data-for", type=float, default=0.0)
    p.add_argument("--delay-mail", type=float, default=0.0)
    p.add_argument("--close-after-data", action="store_true")
    p.add_argument("--max-connections", type=int, default=None)
    p.add_argument("--deliverby-tls-only", action="store_true")
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--refuse-starttls", action="store_true")
    p.add_argument("--break-starttls", action="store_true")
    p.add_argument("--inject-after-starttls", action="store_true")
    args = p.parse_args()
    args.refuse_rcpt = [a.lower() for a in args.refuse_rcpt]
    args.refuse_data_until = time.monotonic() + args.refuse_data_for

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.refuse_greeting:
        server = loop.run_until_complete(asyncio.start_server(refuse, args.host, args.port))
    else:
        handler = Handler(args)
        tls = None
        if args.starttls:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(*args.starttls)
        server = loop.run_until_complete(loop.create_server(
            lambda: RecipientSMTP(handler, args, hostname="mx.test", ident="test ESMTP",
                                  tls_context=tls),
            args.host, args.port))
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
