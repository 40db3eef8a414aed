// The unit tests of policy-sdk (keywords.rs, address.rs), ported, and checks of the
// Unicode tables. Run with `node --test` in policies/default-js.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  answerStartsWith,
  isAddrSpec,
  isOnly,
  mailtoAddress,
  toLocalPart,
  toLowercase,
  trim,
  userPart,
  words,
} from '../helpers.js';
import * as tables from '../unicode-tables.js';

test('matches whole words regardless of case and punctuation', () => {
  assert.ok(answerStartsWith('ACCEPT', ['accept'], 1));
  assert.ok(answerStartsWith('  Accept.\n', ['accept'], 1));
  assert.ok(answerStartsWith('"accept"', ['accept'], 1));
  assert.ok(answerStartsWith('Yes, accept!', ['accept'], 2));
  assert.ok(!answerStartsWith('Yes, accept!', ['accept'], 1));
  assert.ok(!answerStartsWith('unacceptable', ['accept'], 1));
});

test('skips quotes and stops at the signature', () => {
  const reply = '\n> Reply ACCEPT to join\n\nreject\n-- \nBob';
  assert.ok(answerStartsWith(reply, ['reject'], 1));
  assert.ok(!answerStartsWith(reply, ['accept'], 1));
  assert.ok(!answerStartsWith('-- \naccept', ['accept'], 1));
});

test('multi-word keywords match as a sequence', () => {
  assert.ok(answerStartsWith('Opt out please', ['opt out'], 1));
  assert.ok(!answerStartsWith('out opt', ['opt out'], 1));
});

test('is_only rejects longer text', () => {
  assert.ok(isOnly('Leave!', ['leave']));
  assert.ok(!isOnly('leave me alone', ['leave']));
  assert.ok(!isOnly('', ['leave']));
});

test('words and trimming follow Rust, not JS', () => {
  assert.deepEqual(words('Yes, I ACCEPT!'), ['yes', 'i', 'accept']);
  assert.deepEqual(words('ΟΔΥΣΣΕΥΣ ΣΑΣ'), ['οδυσσευς', 'σας']); // final sigma
  assert.deepEqual(words('a\u0301b \u{1F600} x\u{10400}'), ['a', 'b', 'x\u{10428}']);
  assert.equal(trim('\u0085 a \u3000'), 'a'); // NEL is White_Space
  assert.equal(trim('\uFEFFa'), '\uFEFFa'); // U+FEFF is not
  assert.equal(toLowercase('\u0130'), 'i\u0307');
});

test('user parts of each scheme', () => {
  assert.equal(userPart('sip:alice@ims.example.com;transport=tcp'), 'alice');
  assert.equal(userPart('<sips:%2B1555@example.com>'), '+1555');
  assert.equal(userPart('tel:+15551234567;phone-context=x'), '+15551234567');
  assert.equal(userPart('mailto:bob@example.net?subject=hi'), 'bob');
  assert.equal(userPart('sip:example.com'), undefined);
  assert.equal(userPart('http://example.com'), undefined);
  // A '%' before non-ASCII or at the end is kept as it is, never a throw.
  assert.equal(userPart('sip:a%é@x'), 'a%é');
  assert.equal(userPart('tel:+1%4'), '+1%4');
  // Bytes, as Rust decodes them: lossy UTF-8, maximal subparts.
  assert.equal(userPart('sip:%E2%82x@h'), '\uFFFDx');
  assert.equal(userPart('sip:%EF%BB%BFx@h'), '\uFEFFx');
  // White space inside the angle brackets is not part of the URI.
  assert.equal(userPart('< sip:alice@h'), 'alice');
  assert.equal(userPart('<\u3000\u3000sip:a@b'), 'a');
});

test('mailto addresses are checked', () => {
  assert.equal(mailtoAddress('mailto:bob@example.net'), 'bob@example.net');
  assert.equal(mailtoAddress('MAILTO:bob@example.net?cc=x'), 'bob@example.net');
  assert.equal(mailtoAddress('mailto:bob%0d%0aBcc:@x'), undefined);
  assert.equal(mailtoAddress('sip:bob@example.net'), undefined);
});

test('local parts are dot-atoms', () => {
  assert.equal(toLocalPart('+1 (555) 123'), '+1--555--123');
  assert.equal(toLocalPart('.a..b.'), 'a.b');
  assert.equal(toLocalPart('\u{1F600}é'), '--'); // one dash per code point
  assert.ok(isAddrSpec(`${toLocalPart('x\r\ny')}@example.org`));
});

test('addr-spec refuses injection', () => {
  assert.ok(isAddrSpec('a.b@example.org'));
  assert.ok(!isAddrSpec('a b@example.org'));
  assert.ok(!isAddrSpec('a@b@example.org'));
  assert.ok(!isAddrSpec('a@example.org\r\nBcc: x@y'));
  assert.ok(!isAddrSpec('a@example..org'));
  assert.ok(!isAddrSpec('@example.org'));
});

// The tables come from Rust (tools/unicode_tables.rs). Where node's ICU has the same
// Unicode version, they must agree with it code point for code point.
const tablesVersion = /Unicode (\d+\.\d+)/.exec(
  (await import('node:fs')).readFileSync(new URL('../unicode-tables.js', import.meta.url), 'utf8'),
)[1];
test(
  "Unicode tables agree with node's ICU",
  { skip: process.versions.unicode !== tablesVersion && `node has Unicode ${process.versions.unicode}` },
  () => {
    const inRanges = (r, cp) => {
      for (let i = 0; i < r.length; i += 2) if (cp >= r[i] && cp <= r[i + 1]) return true;
      return false;
    };
    const classes = [
      [tables.ALPHANUMERIC, /^[\p{Alphabetic}\p{N}]$/u],
      [tables.WHITE_SPACE, /^\p{White_Space}$/u],
      [tables.CASE_IGNORABLE, /^\p{Case_Ignorable}$/u],
    ];
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const c = String.fromCodePoint(cp);
      for (const [ranges, re] of classes) assert.equal(inRanges(ranges, cp), re.test(c), `U+${cp.toString(16)}`);
      if (!/^\p{Case_Ignorable}$/u.test(c)) {
        assert.equal(inRanges(tables.CASED, cp), /^\p{Cased}$/u.test(c), `cased U+${cp.toString(16)}`);
      }
      if (cp !== 0x3a3) assert.equal(toLowercase(c), c.toLowerCase(), `lower U+${cp.toString(16)}`);
    }
  },
);
