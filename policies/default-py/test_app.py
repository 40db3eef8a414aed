"""Unit tests of the policy and its helpers on plain CPython (3.11+).

They import the typing stubs of the world that build.sh generates under
${CARGO_TARGET_DIR:-<repo>/target}/policy-toolchains/py-bindings; run build.sh once first:

    policies/default-py/build.sh target/policies/default-py.wasm
    python3 -m unittest discover -s policies/default-py

The helper cases are those of policy-sdk/src/keywords.rs and address.rs; the policy cases
those of policies/default/src/lib.rs. The component itself is tested with
`iwf policy test target/policies/default-py.wasm policies/default/cases.toml`.
"""

import os
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
# A relative CARGO_TARGET_DIR is taken from the repository, as build.sh does.
BINDINGS = (
    HERE.parent.parent / os.environ.get("CARGO_TARGET_DIR", "target")
    / "policy-toolchains"
    / "py-bindings"
)
if not (BINDINGS / "wit_world").is_dir():
    raise ImportError(f"no bindings in {BINDINGS}: run {HERE / 'build.sh'} OUT.wasm first")
sys.path[:0] = [str(BINDINGS), str(HERE)]

from wit_world.exports.decisions import (  # noqa: E402
    ChatContext,
    Participant,
    Reply,
    ReplyAction_Accept,
    ReplyAction_Chat,
    ReplyAction_Ignore,
    ReplyAction_Leave,
    ReplyAction_Reject,
    SmtpFailure,
    SmtpStage,
)
from wit_world.imports.types import (  # noqa: E402
    Gateway,
    GroupInfo,
    Identity,
    Mailbox,
    Priority,
    Recipient,
    CopyControl,
    Session,
    SessionPhase,
)

import app  # noqa: E402
from iwf_helpers import (  # noqa: E402
    answer_starts_with,
    is_addr_spec,
    is_only,
    mailto_address,
    to_local_part,
    user_part,
    words,
)

POLICY = app.Decisions()
GATEWAY = Gateway(sip_domain="iwf.example.com", mail_domain="mail.example.com")


def identity(uri: str, name: str | None = None) -> Identity:
    return Identity(uri=uri, display_name=name)


def session(**fields) -> Session:
    base = dict(
        session_id="s1",
        gateway=GATEWAY,
        request_uri="mailto:bob@example.net",
        asserted_identity=None,
        from_=identity("sip:+15551234567@ims.example.com", "Alice"),
        privacy_id=False,
        referred_by=None,
        reply_to=None,
        subject=None,
        priority=None,
        conversation_id=None,
        contribution_id=None,
        in_reply_to_contribution_id=None,
        group=None,
    )
    return Session(**(base | fields))


def reply(text: str, phase: SessionPhase = SessionPhase.AWAITING_ANSWER) -> Reply:
    return Reply(
        phase=phase,
        sender=Mailbox("bob@example.net", "Bob"),
        subject="Re: Alice invites you to a chat",
        text=text,
        headers=[("In-Reply-To", "<inv-s1@mail.example.com>")],
    )


class KeywordTests(unittest.TestCase):
    """policy-sdk/src/keywords.rs"""

    def test_matches_whole_words_regardless_of_case_and_punctuation(self):
        self.assertTrue(answer_starts_with("ACCEPT", ["accept"], 1))
        self.assertTrue(answer_starts_with("  Accept.\n", ["accept"], 1))
        self.assertTrue(answer_starts_with('"accept"', ["accept"], 1))
        self.assertTrue(answer_starts_with("Yes, accept!", ["accept"], 2))
        self.assertFalse(answer_starts_with("Yes, accept!", ["accept"], 1))
        self.assertFalse(answer_starts_with("unacceptable", ["accept"], 1))

    def test_skips_quotes_and_stops_at_the_signature(self):
        text = "\n> Reply ACCEPT to join\n\nreject\n-- \nBob"
        self.assertTrue(answer_starts_with(text, ["reject"], 1))
        self.assertFalse(answer_starts_with(text, ["accept"], 1))
        self.assertFalse(answer_starts_with("-- \naccept", ["accept"], 1))

    def test_multi_word_keywords_match_as_a_sequence(self):
        self.assertTrue(answer_starts_with("Opt out please", ["opt out"], 1))
        self.assertFalse(answer_starts_with("out opt", ["opt out"], 1))

    def test_is_only_rejects_longer_text(self):
        self.assertTrue(is_only("Leave!", ["leave"]))
        self.assertFalse(is_only("leave me alone", ["leave"]))
        self.assertFalse(is_only("", ["leave"]))

    def test_rust_primitives(self):
        # Other_Alphabetic marks are part of a word, as in Rust; U+001C is no white space.
        self.assertEqual(list(words("LEAVE \u093f")), ["leave", "\u093f"])
        self.assertFalse(is_only("LEAVE \u093f", ["leave"]))
        self.assertEqual(list(words("no\u0345")), ["no\u0345"])
        self.assertTrue(answer_starts_with("\u2028accept", ["accept"], 1))
        # A bare CR ends no line (Rust `str::lines`).
        self.assertFalse(answer_starts_with("x\raccept", ["accept"], 1))


class AddressTests(unittest.TestCase):
    """policy-sdk/src/address.rs"""

    def test_user_parts_of_each_scheme(self):
        self.assertEqual(user_part("sip:alice@ims.example.com;transport=tcp"), "alice")
        self.assertEqual(user_part("<sips:%2B1555@example.com>"), "+1555")
        self.assertEqual(user_part("tel:+15551234567;phone-context=x"), "+15551234567")
        self.assertEqual(user_part("mailto:bob@example.net?subject=hi"), "bob")
        self.assertIsNone(user_part("sip:example.com"))
        self.assertIsNone(user_part("http://example.com"))
        # A '%' before non-ASCII or at the end is kept as it is.
        self.assertEqual(user_part("sip:a%é@x"), "a%é")
        self.assertEqual(user_part("tel:+1%4"), "+1%4")

    def test_white_space_inside_angle_brackets_is_not_part_of_the_uri(self):
        self.assertEqual(user_part("<\u3000a:x@y>"), None)  # scheme "a": not sip/tel/mailto
        self.assertEqual(user_part("<\u3000sip:alice@h>"), "alice")
        self.assertEqual(user_part("< sip:alice@h>"), "alice")

    def test_mailto_addresses_are_checked(self):
        self.assertEqual(mailto_address("mailto:bob@example.net"), "bob@example.net")
        self.assertEqual(mailto_address("MAILTO:bob@example.net?cc=x"), "bob@example.net")
        self.assertIsNone(mailto_address("mailto:bob%0d%0aBcc:@x"))
        self.assertIsNone(mailto_address("sip:bob@example.net"))

    def test_local_parts_are_dot_atoms(self):
        self.assertEqual(to_local_part("+1 (555) 123"), "+1--555--123")
        self.assertEqual(to_local_part(".a..b."), "a.b")
        self.assertTrue(is_addr_spec(to_local_part("x\r\ny") + "@example.org"))

    def test_addr_spec_refuses_injection(self):
        self.assertTrue(is_addr_spec("a.b@example.org"))
        self.assertFalse(is_addr_spec("a b@example.org"))
        self.assertFalse(is_addr_spec("a@b@example.org"))
        self.assertFalse(is_addr_spec("a@example.org\r\nBcc: x@y"))
        self.assertFalse(is_addr_spec("a@example..org"))
        self.assertFalse(is_addr_spec("@example.org"))


class PolicyTests(unittest.TestCase):
    """policies/default/src/lib.rs"""

    def test_info(self):
        info = POLICY.info()
        self.assertEqual((info.name, info.version), ("default", "0.1.0+py"))

    def test_address_mapping_round_trips(self):
        for uri in ["tel:+15551234567", "sip:alice@iwf.example.com", "sip:bob@ims.other.net"]:
            mailbox = POLICY.cpm_to_email(GATEWAY, identity(uri))
            self.assertIsNotNone(mailbox)
            self.assertTrue(is_addr_spec(mailbox.address), mailbox.address)
            self.assertEqual(POLICY.email_to_cpm(GATEWAY, mailbox), uri)

    def test_foreign_domains_do_not_map_back(self):
        self.assertIsNone(POLICY.email_to_cpm(GATEWAY, Mailbox("alice@elsewhere.org", None)))

    def test_mapping_edges(self):
        self.assertEqual(
            POLICY.cpm_to_email(GATEWAY, identity("sip:Bob@IWF.Example.COM:5060;x")).address,
            "Bob@mail.example.com",
        )
        # As in Rust, the scheme of a bracketed URI is "<sip": no mapping.
        self.assertIsNone(POLICY.cpm_to_email(GATEWAY, identity("<sip:bob@iwf.example.com>")))
        self.assertIsNone(POLICY.cpm_to_email(GATEWAY, identity("sip:bob")))
        self.assertEqual(POLICY.email_to_cpm(GATEWAY, Mailbox("+@MAIL.example.com", None)),
                         "sip:+@iwf.example.com")
        self.assertEqual(POLICY.email_to_cpm(GATEWAY, Mailbox("=x@mail.example.com", None)),
                         "sip:=x@iwf.example.com")

    def test_replies(self):
        awaiting, live = SessionPhase.AWAITING_ANSWER, SessionPhase.LIVE
        s = session()
        self.assertEqual(POLICY.interpret_reply(s, reply("Yes, I accept", awaiting)), ReplyAction_Accept())
        self.assertEqual(POLICY.interpret_reply(s, reply("LEAVE", awaiting)), ReplyAction_Reject())
        self.assertEqual(
            POLICY.interpret_reply(s, reply("Who is this?", awaiting)),
            ReplyAction_Ignore("no ACCEPT or REJECT in the answer to an invitation"),
        )
        self.assertEqual(POLICY.interpret_reply(s, reply("Leave!\n-- \nBob", live)), ReplyAction_Leave())
        self.assertEqual(POLICY.interpret_reply(s, reply("leave it to me", live)),
                         ReplyAction_Chat("leave it to me"))

    def test_group_invitation(self):
        group = GroupInfo(
            focus_uri="sip:conf-1@iwf.example.com",
            recipients=[
                Recipient("mailto:bob@example.net", "Bob", CopyControl.TO),
                Recipient("sip:carol@ims.example.com", None, CopyControl.CC),
            ],
        )
        mail = POLICY.invitation_body(session(session_id="g7", subject="Lunch", group=group))
        self.assertEqual(mail.subject, "Alice invites you to a chat")
        self.assertEqual(
            mail.body,
            "Alice invites you to a group chat.\nTopic: Lunch\n\nInvited:\n  Bob\n  carol\n"
            "\nTo join, reply to this e-mail with the word ACCEPT.\n"
            "To decline, reply with the word REJECT.\n"
            "Once you have joined, every reply is sent to the chat; "
            "reply with the word LEAVE to leave it.\n",
        )

    def test_privacy_and_display_names(self):
        self.assertEqual(POLICY.invitation_body(session(privacy_id=True)).subject,
                         "Someone invites you to a chat")
        self.assertEqual(
            POLICY.invitation_body(session(from_=identity("sip:+1555@x", "  "))).subject,
            "+1555 invites you to a chat",
        )

    def test_smtp_failures_and_priorities(self):
        def status(stage, permanent):
            return POLICY.smtp_failure_status(session(), SmtpFailure(stage, 0, None, "", permanent))

        self.assertEqual(status(SmtpStage.DNS, True).code, 404)
        self.assertEqual(status(SmtpStage.DNS, False).code, 480)
        self.assertEqual(status(SmtpStage.GREETING, True).code, 480)
        self.assertEqual(status(SmtpStage.RCPT_TO, True).code, 488)
        self.assertEqual(POLICY.x_priority(session(priority=Priority.EMERGENCY), None), 1)
        self.assertIsNone(POLICY.x_priority(session(), None))

    def test_participants(self):
        chat = ChatContext(3, [identity("sip:+1@x", "Alice"), identity("sip:carol@x")])
        self.assertTrue(POLICY.body_additions(session(), chat).after.endswith(
            "Participants: Alice, carol\n"))
        self.assertIsNone(POLICY.participant_info_text(session(), []))
        text = POLICY.participant_info_text(session(), [Participant(identity("sip:carol@x"), "connected")])
        self.assertEqual(text.body, "Participants of the chat:\n  carol (connected)\n")


if __name__ == "__main__":
    unittest.main()
