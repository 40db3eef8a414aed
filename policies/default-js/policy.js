// The `default` policy in JavaScript: faithful to OMA CPM 5.2.4.2.4-5.2.4.2.9, and
// answer for answer the same as the Rust one (policies/default/src/lib.rs).
//
// - asks the e-mail user (never accepts on their behalf);
// - English keywords: ACCEPT / REJECT to answer, LEAVE to leave;
// - texts that tell the e-mail user how to accept, reject and leave;
// - one new e-mail address per group session;
// - Priority -> X-Priority (non-urgent 5, normal 3, urgent 1);
// - no `BY=`; 488 for SMTP failures (step 5b), 4xx for a 554 greeting (step 3);
// - a notification when the CPM side ends the session.
//
// WIT as componentize-js maps it: the exported interface `decisions` is an object of
// camelCase functions; records have camelCase fields; an option is the value or
// undefined; a variant is `{ tag, val }`; an enum case is its kebab-case name.

import './keep-bom.js';
import {
  answerStartsWith,
  asciiLower,
  eqIgnoreAsciiCase,
  isAddrSpec,
  isOnly,
  mailtoAddress,
  rsplitOnce,
  scheme,
  toLocalPart,
  trim,
  userPart,
} from './helpers.js';

const ACCEPT = ['accept', 'yes', 'join'];
const REJECT = ['reject', 'decline', 'no'];
const LEAVE = ['leave', 'quit', 'unsubscribe'];

/** Default answer window: one day. */
const EXPIRY_SECONDS = 24 * 60 * 60;

const isNone = (option) => option === undefined || option === null;

/** How a person is named: the display name, else the URI's user part, else the URI. */
const display = (name, uri) => {
  const trimmed = isNone(name) ? '' : trim(name);
  return trimmed !== '' ? trimmed : (userPart(uri) ?? uri);
};

/** How the mails name the inviter: nobody is named under Privacy: id. */
const inviterName = (session) => {
  if (session.privacyId) return 'Someone';
  const id = isNone(session.assertedIdentity) ? session.from : session.assertedIdentity;
  return display(id.displayName, id.uri);
};

/** The host of a `sip:` URI, lower-cased, without port, parameters and headers. */
const sipHost = (uri) => {
  const unbracketed = trim(uri).replace(/>+$/, '');
  const at = unbracketed.indexOf('@');
  if (at < 0) return undefined;
  const host = unbracketed.slice(at + 1).split(/[;?:]/)[0];
  return host === '' ? undefined : asciiLower(host);
};

export const decisions = {
  // The same policy as Rust's `default`, so the same name; the build metadata of the
  // version (SemVer 2.0 section 10) says which language it was written in.
  info: () => ({ name: 'default', version: '0.1.0+js' }),

  // 5.2.4.2.4: always ask the e-mail user, never accept on their behalf.
  onInvite: (_session) => ({ tag: 'ask-user' }),

  // 5.2.4.1: tel:+1555 -> `+1555@<mail-domain>`; sip:alice@<sip-domain> ->
  // `alice@<mail-domain>`; sip:alice@other.example -> `alice=other.example@<mail-domain>`:
  // reversible by emailToCpm, so replies reach the right CPM user.
  cpmToEmail(gateway, cpm) {
    let local;
    switch (scheme(cpm.uri)) {
      case 'mailto': {
        const address = mailtoAddress(cpm.uri);
        return address === undefined ? undefined : { address, displayName: cpm.displayName };
      }
      case 'tel':
        local = userPart(cpm.uri);
        if (local === undefined) return undefined;
        break;
      case 'sip':
      case 'sips': {
        const user = userPart(cpm.uri);
        if (user === undefined) return undefined;
        const host = sipHost(cpm.uri);
        if (host === undefined) return undefined;
        local = eqIgnoreAsciiCase(host, gateway.sipDomain) ? user : `${user}=${host}`;
        break;
      }
      default:
        return undefined;
    }
    const address = `${toLocalPart(local)}@${gateway.mailDomain}`;
    return isAddrSpec(address) ? { address, displayName: cpm.displayName } : undefined;
  },

  // 5.2.4.1, the other way: `+digits` -> tel:, `user=host` -> sip:user@host,
  // anything else -> a user of the gateway's SIP domain.
  emailToCpm(gateway, email) {
    const parts = rsplitOnce(email.address, '@');
    if (parts === undefined) return undefined;
    const [local, domain] = parts;
    if (!eqIgnoreAsciiCase(domain, gateway.mailDomain) || local === '') return undefined;
    if (/^\+[0-9]+$/.test(local)) return `tel:${local}`;
    const eq = local.indexOf('=');
    if (eq > 0 && eq < local.length - 1) {
      return `sip:${local.slice(0, eq)}@${local.slice(eq + 1)}`;
    }
    return `sip:${local}@${gateway.sipDomain}`;
  },

  // 5.2.4.2.4 step 2b: one new address per group session.
  groupAddress: (session) => ({
    address: `group-${toLocalPart(session.sessionId)}@${session.gateway.mailDomain}`,
    displayName: isNone(session.subject) ? 'Group chat' : `${session.subject} (group chat)`,
  }),

  // AA2 message body: who invites, to what, and how to accept, reject and leave.
  invitationBody(session) {
    const inviter = inviterName(session);
    let body;
    if (isNone(session.group)) {
      body = `${inviter} invites you to a chat.\n`;
    } else {
      body = `${inviter} invites you to a group chat.\n`;
      if (!isNone(session.subject)) body += `Topic: ${session.subject}\n`;
      const { recipients } = session.group;
      if (recipients.length > 0) {
        body += '\nInvited:\n';
        for (const r of recipients) body += `  ${display(r.displayName, r.uri)}\n`;
      }
    }
    body +=
      '\nTo join, reply to this e-mail with the word ACCEPT.\n' +
      'To decline, reply with the word REJECT.\n' +
      'Once you have joined, every reply is sent to the chat; ' +
      'reply with the word LEAVE to leave it.\n';
    return { subject: `${inviter} invites you to a chat`, body };
  },

  // 5.2.4.2.4 (interpretation), 5.2.4.2.9 (leave), 5.2.4.2.8 (chat).
  interpretReply(_session, reply) {
    const { text } = reply;
    if (reply.phase === 'awaiting-answer') {
      if (answerStartsWith(text, ACCEPT, 1)) return { tag: 'accept' };
      if (answerStartsWith(text, REJECT, 1) || answerStartsWith(text, LEAVE, 1)) {
        return { tag: 'reject' };
      }
      return { tag: 'ignore', val: 'no ACCEPT or REJECT in the answer to an invitation' };
    }
    // Only a reply that says nothing but the keyword leaves: "leave it to me" is chat.
    return isOnly(text, LEAVE) ? { tag: 'leave' } : { tag: 'chat', val: text };
  },

  invitationExpiry: (_session) => EXPIRY_SECONDS,

  // AA1/BB1/CC1/DD1 BY rows: no BY=.
  deliverBy: (_session, _kind) => undefined,

  // AA3: the SIP answer when mailing the invitation failed.
  smtpFailureStatus(_session, failure) {
    const status = (code, reason) => ({ code, reason });
    switch (failure.stage) {
      case 'dns':
        return failure.permanent ? status(404, 'Not Found') : status(480, 'Temporarily Unavailable');
      case 'connect':
        return status(480, 'Temporarily Unavailable');
      case 'greeting': // 5.2.4.2.4 step 3: a 554 greeting -> SIP 4xx.
        return status(480, 'Temporarily Unavailable');
      default: // Step 5b: 4yz and 5yz -> 488.
        return status(488, 'Not Acceptable Here');
    }
  },

  // AA2 X-Priority row: 5 = non-urgent, 3 = normal, 1 = urgent.
  xPriority(session, _kind) {
    switch (session.priority) {
      case 'non-urgent':
        return 5;
      case 'normal':
        return 3;
      case 'urgent':
      case 'emergency':
        return 1;
      default:
        return undefined;
    }
  },

  // BB2 message body: how to leave, and who takes part.
  bodyAdditions(_session, chat) {
    let after = '--\nReply to this e-mail to answer in the chat; reply LEAVE to leave it.\n';
    if (chat.participants.length > 0) {
      const names = chat.participants.map((p) => display(p.displayName, p.uri));
      after += `Participants: ${names.join(', ')}\n`;
    }
    return { before: undefined, after };
  },

  // 5.2.4.2.6, CC2: tell the e-mail user the chat ended.
  sessionClosed: (session) => ({
    subject: 'Chat ended',
    body: `${inviterName(session)} ended the chat. Replies to this e-mail are no longer delivered.\n`,
  }),

  // 5.2.4.2.7: participant information on every change.
  participantInfoFrequency: (_session) => ({ tag: 'every-change' }),

  // DD2 message body.
  participantInfoText(_session, participants) {
    if (participants.length === 0) return undefined;
    let body = 'Participants of the chat:\n';
    for (const p of participants) {
      body += `  ${display(p.identity.displayName, p.identity.uri)} (${p.status})\n`;
    }
    return { subject: 'Chat participants', body };
  },

  // EE1, RFC 4975 defaults: no Success-Report, Failure-Report yes.
  msrpReports: (_session) => ({ successReport: false, failureReport: 'yes' }),

  // RFC 3323 4.1.1.3 hides the caller, "Anonymous" as display name; the address stays
  // answerable: one per session at the gateway's mail domain, from the random session id.
  anonymousIdentity: (session) => ({
    address: `anon-${toLocalPart(session.sessionId)}@${session.gateway.mailDomain}`,
    displayName: 'Anonymous',
  }),
};
