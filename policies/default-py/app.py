"""The `default` policy in Python: faithful to OMA CPM 5.2.4.2.4-5.2.4.2.9.

The same decisions as the Rust `policies/default`:

- asks the e-mail user (never accepts on their behalf);
- English keywords: ACCEPT / REJECT to answer, LEAVE to leave;
- texts that tell the e-mail user how to accept, reject and leave;
- one new e-mail address per group session;
- Priority -> X-Priority (non-urgent 5, normal 3, urgent 1);
- no `BY=`; 488 for SMTP failures (step 5b), 4xx for a 554 greeting (step 3);
- a notification when the CPM side ends the session.

Built with componentize-py (see build.sh); `wit_world` is generated at build time.
"""

from __future__ import annotations

from wit_world import exports
from wit_world.exports.decisions import (
    Additions,
    ByRequest,
    ChatContext,
    FailureReport,
    InvitationMail,
    InviteDecision,
    InviteDecision_AskUser,
    Notification,
    Participant,
    ParticipantFrequency,
    ParticipantFrequency_EveryChange,
    PolicyInfo,
    Reply,
    ReplyAction,
    ReplyAction_Accept,
    ReplyAction_Chat,
    ReplyAction_Ignore,
    ReplyAction_Leave,
    ReplyAction_Reject,
    ReportFlags,
    SipStatus,
    SmtpFailure,
    SmtpStage,
)
from wit_world.imports.types import (
    Gateway,
    Identity,
    Mailbox,
    MailKind,
    Priority,
    Session,
    SessionPhase,
)

from iwf_helpers import (
    answer_starts_with,
    ascii_lower,
    eq_ignore_ascii_case,
    is_addr_spec,
    is_ascii_digits,
    is_only,
    mailto_address,
    scheme,
    to_local_part,
    trim,
    user_part,
)

# The same policy as Rust's `default`, so the same name; the version's build metadata
# (SemVer 2.0 section 10) says which language it was written in.
NAME = "default"
VERSION = "0.1.0+py"

ACCEPT = ("accept", "yes", "join")
REJECT = ("reject", "decline", "no")
LEAVE = ("leave", "quit", "unsubscribe")

EXPIRY_SECONDS = 24 * 60 * 60
"""Default answer window: one day."""

HOW_TO_ANSWER = (
    "\nTo join, reply to this e-mail with the word ACCEPT.\n"
    "To decline, reply with the word REJECT.\n"
    "Once you have joined, every reply is sent to the chat; "
    "reply with the word LEAVE to leave it.\n"
)

X_PRIORITY = {
    Priority.NON_URGENT: 5,
    Priority.NORMAL: 3,
    Priority.URGENT: 1,
    Priority.EMERGENCY: 1,
}
"""AA2 X-Priority row: 5 = non-urgent, 3 = normal, 1 = urgent."""


class Decisions(exports.Decisions):
    """World `policy`, interface `decisions`: one method per decision point."""

    def info(self) -> PolicyInfo:
        return PolicyInfo(name=NAME, version=VERSION)

    def on_invite(self, session: Session) -> InviteDecision:
        """5.2.4.2.4: always ask the e-mail user."""
        return InviteDecision_AskUser()

    def cpm_to_email(self, gateway: Gateway, cpm: Identity) -> Mailbox | None:
        """5.2.4.1. tel:+1555 -> `+1555@<mail-domain>`; sip:alice@<sip-domain> ->
        `alice@<mail-domain>`; sip:alice@other.example -> `alice=other.example@<mail-domain>`:
        reversible by `email_to_cpm`, so replies reach the right CPM user."""
        match scheme(cpm.uri):
            case "mailto":
                address = mailto_address(cpm.uri)
                return None if address is None else Mailbox(address, cpm.display_name)
            case "tel":
                local = user_part(cpm.uri)
            case "sip" | "sips":
                user, host = user_part(cpm.uri), sip_host(cpm.uri)
                if user is None or host is None:
                    return None
                local = user if eq_ignore_ascii_case(host, gateway.sip_domain) else f"{user}={host}"
            case _:
                return None
        if local is None:
            return None
        address = f"{to_local_part(local)}@{gateway.mail_domain}"
        return Mailbox(address, cpm.display_name) if is_addr_spec(address) else None

    def email_to_cpm(self, gateway: Gateway, email: Mailbox) -> str | None:
        """5.2.4.1, the other way: the inverse of `cpm_to_email` at the mail domain."""
        local, at, domain = email.address.rpartition("@")
        if not at or not eq_ignore_ascii_case(domain, gateway.mail_domain) or not local:
            return None
        digits = local.removeprefix("+")
        if local.startswith("+") and digits and is_ascii_digits(digits):
            return f"tel:{local}"
        user, eq, host = local.partition("=")
        if eq and user and host:
            return f"sip:{user}@{host}"
        return f"sip:{local}@{gateway.sip_domain}"

    def group_address(self, session: Session) -> Mailbox:
        """5.2.4.2.4 step 2b: one new address per group session."""
        return Mailbox(
            address=f"group-{to_local_part(session.session_id)}@{session.gateway.mail_domain}",
            display_name=(
                "Group chat" if session.subject is None else f"{session.subject} (group chat)"
            ),
        )

    def invitation_body(self, session: Session) -> InvitationMail:
        """AA2 message body: who invites, and how to accept, reject and leave."""
        inviter = inviter_name(session)
        group = session.group
        if group is None:
            body = f"{inviter} invites you to a chat.\n"
        else:
            body = f"{inviter} invites you to a group chat.\n"
            if session.subject is not None:
                body += f"Topic: {session.subject}\n"
            if group.recipients:
                body += "\nInvited:\n"
                body += "".join(f"  {display(r.display_name, r.uri)}\n" for r in group.recipients)
        return InvitationMail(
            subject=f"{inviter} invites you to a chat", body=body + HOW_TO_ANSWER
        )

    def interpret_reply(self, session: Session, reply: Reply) -> ReplyAction:
        """5.2.4.2.4 (interpretation), 5.2.4.2.9 (leave), 5.2.4.2.8 (chat)."""
        text = reply.text
        if reply.phase == SessionPhase.AWAITING_ANSWER:
            if answer_starts_with(text, ACCEPT, 1):
                return ReplyAction_Accept()
            if answer_starts_with(text, REJECT, 1) or answer_starts_with(text, LEAVE, 1):
                return ReplyAction_Reject()
            return ReplyAction_Ignore("no ACCEPT or REJECT in the answer to an invitation")
        # Only a reply that says nothing but the keyword leaves: "leave it to me" is chat.
        if is_only(text, LEAVE):
            return ReplyAction_Leave()
        return ReplyAction_Chat(text)

    def invitation_expiry(self, session: Session) -> int:
        """One day to answer the invitation."""
        return EXPIRY_SECONDS

    def deliver_by(self, session: Session, kind: MailKind) -> ByRequest | None:
        """No `BY=` (AA1, BB1, CC1, DD1 BY rows)."""
        return None

    def smtp_failure_status(self, session: Session, failure: SmtpFailure) -> SipStatus:
        """AA3: the SIP answer when mailing the invitation failed."""
        match failure.stage:
            case SmtpStage.DNS if failure.permanent:
                return SipStatus(404, "Not Found")
            case SmtpStage.DNS | SmtpStage.CONNECT:
                return SipStatus(480, "Temporarily Unavailable")
            case SmtpStage.GREETING:
                # 5.2.4.2.4 step 3: a 554 greeting -> SIP 4xx.
                return SipStatus(480, "Temporarily Unavailable")
            case _:
                # Step 5b: 4yz and 5yz -> 488.
                return SipStatus(488, "Not Acceptable Here")

    def x_priority(self, session: Session, kind: MailKind) -> int | None:
        """AA2 X-Priority row: 5 = non-urgent, 3 = normal, 1 = urgent."""
        return None if session.priority is None else X_PRIORITY[session.priority]

    def body_additions(self, session: Session, chat: ChatContext) -> Additions:
        """BB2 message body: how to answer and leave, and the participants."""
        after = "--\nReply to this e-mail to answer in the chat; reply LEAVE to leave it.\n"
        if chat.participants:
            names = ", ".join(display(p.display_name, p.uri) for p in chat.participants)
            after += f"Participants: {names}\n"
        return Additions(before=None, after=after)

    def session_closed(self, session: Session) -> Notification | None:
        """5.2.4.2.6, CC2: tell the e-mail user the chat ended."""
        return Notification(
            subject="Chat ended",
            body=(
                f"{inviter_name(session)} ended the chat. "
                "Replies to this e-mail are no longer delivered.\n"
            ),
        )

    def participant_info_frequency(self, session: Session) -> ParticipantFrequency:
        """5.2.4.2.7: participant information on every change."""
        return ParticipantFrequency_EveryChange()

    def participant_info_text(
        self, session: Session, participants: list[Participant]
    ) -> Notification | None:
        """DD2 message body: names and status, or none without participants."""
        if not participants:
            return None
        body = "Participants of the chat:\n" + "".join(
            f"  {display(p.identity.display_name, p.identity.uri)} ({p.status})\n"
            for p in participants
        )
        return Notification(subject="Chat participants", body=body)

    def msrp_reports(self, session: Session) -> ReportFlags:
        """EE1, RFC 4975 defaults: no Success-Report, Failure-Report yes."""
        return ReportFlags(success_report=False, failure_report=FailureReport.YES)

    def anonymous_identity(self, session: Session) -> Mailbox:
        """RFC 3323 4.1.1.3 hides the caller, "Anonymous" as display name; the address
        stays answerable: one per session at the gateway's mail domain, from the random
        session id, so it names nobody."""
        return Mailbox(
            address=f"anon-{to_local_part(session.session_id)}@{session.gateway.mail_domain}",
            display_name="Anonymous",
        )


def inviter_name(session: Session) -> str:
    """How the invitation names the inviter: nobody is named under Privacy: id."""
    if session.privacy_id:
        return "Someone"
    identity = session.from_ if session.asserted_identity is None else session.asserted_identity
    return display(identity.display_name, identity.uri)


def display(name: str | None, uri: str) -> str:
    """The display name, trimmed, or else the user part of the URI, or else the URI."""
    name = None if name is None else trim(name)
    if name:
        return name
    user = user_part(uri)
    return uri if user is None else user


def sip_host(uri: str) -> str | None:
    """The host of a SIP URI, lower-cased (ASCII), without port, parameters or headers."""
    _, at, after_at = trim(uri).rstrip(">").partition("@")
    if not at:
        return None
    host = after_at
    for separator in ";?:":
        host = host.split(separator)[0]
    return ascii_lower(host) or None
