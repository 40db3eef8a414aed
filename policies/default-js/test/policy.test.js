// The unit tests of policies/default/src/lib.rs, ported. The behaviour as a whole is
// tested on the component with `iwf policy test` (README.md).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAddrSpec } from '../helpers.js';
import { decisions } from '../policy.js';

const gateway = { sipDomain: 'iwf.example.com', mailDomain: 'mail.example.com' };

test('address mapping round-trips', () => {
  for (const uri of ['tel:+15551234567', 'sip:alice@iwf.example.com', 'sip:bob@ims.other.net']) {
    const mailbox = decisions.cpmToEmail(gateway, { uri });
    assert.ok(isAddrSpec(mailbox.address), mailbox.address);
    assert.equal(decisions.emailToCpm(gateway, mailbox), uri);
  }
});

test('foreign domains do not map back', () => {
  assert.equal(decisions.emailToCpm(gateway, { address: 'alice@elsewhere.org' }), undefined);
});

test('info names the policy default, the version says JavaScript', () => {
  assert.deepEqual(decisions.info(), { name: 'default', version: '0.1.0+js' });
});

test('replies are interpreted by phase', () => {
  const reply = (phase, text) => decisions.interpretReply({}, { phase, text });
  assert.deepEqual(reply('awaiting-answer', 'Yes, I accept'), { tag: 'accept' });
  assert.deepEqual(reply('awaiting-answer', 'LEAVE'), { tag: 'reject' });
  assert.equal(reply('awaiting-answer', 'unacceptable').tag, 'ignore');
  assert.deepEqual(reply('live', 'Leave!\n-- \nBob'), { tag: 'leave' });
  assert.deepEqual(reply('live', 'leave it to me'), { tag: 'chat', val: 'leave it to me' });
});

test('the BOM fix keeps a leading U+FEFF and only that', () => {
  const bytes = Uint8Array.of(0xef, 0xbb, 0xbf, 0x61);
  assert.equal(new TextDecoder().decode(bytes), '\uFEFFa');
  assert.equal(new TextDecoder('utf-16le').decode(Uint8Array.of(0x61, 0)), 'a');
});
