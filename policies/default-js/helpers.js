// Helpers of the `default` policy: a port of policy-sdk/src/keywords.rs and
// policy-sdk/src/address.rs, edge cases included. Rust works on Unicode scalar
// values and UTF-8 bytes, JS strings on UTF-16 code units: wherever that matters
// these functions iterate code points (`for...of`) or UTF-8 bytes.

import {
  ALPHANUMERIC,
  CASE_IGNORABLE,
  CASED,
  LOWER_MULTI,
  LOWER_RUNS,
  WHITE_SPACE,
} from './unicode-tables.js';

// ---------------------------------------------------------------------------------
// Unicode as Rust has it. StarlingMonkey's SpiderMonkey has no ICU (`/\p{..}/u` is a
// SyntaxError) and its own Unicode version, so the classes and the lower-case mapping
// come from Rust's standard library itself (unicode-tables.js, tools/unicode_tables.rs).

/** Whether code point `cp` is in the flat inclusive `ranges` [s0, e0, s1, e1, ...]. */
const inRanges = (ranges, cp) => {
  let lo = 0;
  let hi = ranges.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < ranges[2 * mid]) hi = mid - 1;
    else if (cp > ranges[2 * mid + 1]) lo = mid + 1;
    else return true;
  }
  return false;
};

/** Rust `char::is_alphanumeric`: Alphabetic or Numeric (Nd, Nl, No). */
const isAlphanumeric = (cp) => inRanges(ALPHANUMERIC, cp);
/** Rust `char::is_whitespace`: White_Space (U+0085 yes, U+FEFF no, unlike JS `trim`). */
const isWhiteSpace = (cp) => inRanges(WHITE_SPACE, cp);

/** Rust `str::trim`. */
export const trim = (s) => trimEnd(trimStart(s));

const trimStart = (s) => {
  let i = 0;
  while (i < s.length && isWhiteSpace(s.codePointAt(i))) i += s.codePointAt(i) > 0xffff ? 2 : 1;
  return s.slice(i);
};

/** Rust `str::trim_end`. */
const trimEnd = (s) => {
  const cps = [...s];
  while (cps.length > 0 && isWhiteSpace(cps.at(-1).codePointAt(0))) cps.pop();
  return cps.join('');
};

/** `char::to_lowercase` as a map from code point to string, built once. */
const LOWER = new Map(LOWER_MULTI);
for (let i = 0; i < LOWER_RUNS.length; i += 4) {
  const [start, count, stride, delta] = LOWER_RUNS.slice(i, i + 4);
  for (let k = 0; k < count; k++) {
    const cp = start + k * stride;
    LOWER.set(cp, String.fromCodePoint(cp + delta));
  }
}

const SIGMA = 0x3a3;

/** Unicode 3.13 Final_Sigma context, as Rust's `str::to_lowercase` tests it. */
const casedAfterIgnorable = (cps) => {
  const first = cps.find((cp) => !inRanges(CASE_IGNORABLE, cp));
  return first !== undefined && inRanges(CASED, first);
};

/** Rust `str::to_lowercase`: full mapping, Σ -> ς at the end of a word. */
export const toLowercase = (s) => {
  const cps = Array.from(s, (c) => c.codePointAt(0));
  return cps
    .map((cp, i) => {
      if (cp === SIGMA) {
        const final =
          casedAfterIgnorable(cps.slice(0, i).reverse()) && !casedAfterIgnorable(cps.slice(i + 1));
        return final ? '\u03c2' : '\u03c3';
      }
      return LOWER.get(cp) ?? String.fromCodePoint(cp);
    })
    .join('');
};

/** Rust `to_ascii_lowercase`: only A-Z change. */
export const asciiLower = (s) => s.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** Rust `eq_ignore_ascii_case`. */
export const eqIgnoreAsciiCase = (a, b) => a.length === b.length && asciiLower(a) === asciiLower(b);

/** Rust `trim_start_matches(c)` / `trim_end_matches(c)` for one character. */
const trimStartChar = (s, c) => {
  let i = 0;
  while (s.startsWith(c, i)) i += c.length;
  return s.slice(i);
};
const trimEndChar = (s, c) => {
  let end = s.length;
  while (end >= c.length && s.startsWith(c, end - c.length)) end -= c.length;
  return s.slice(0, end);
};

/** Rust `split_once(sep)`: [before, after] at the first `sep`, or undefined. */
const splitOnce = (s, sep) => {
  const i = s.indexOf(sep);
  return i < 0 ? undefined : [s.slice(0, i), s.slice(i + sep.length)];
};

/** Rust `rsplit_once(sep)`: [before, after] at the last `sep`, or undefined. */
export const rsplitOnce = (s, sep) => {
  const i = s.lastIndexOf(sep);
  return i < 0 ? undefined : [s.slice(0, i), s.slice(i + sep.length)];
};

// ---------------------------------------------------------------------------------
// UTF-8 (Rust slices strings by byte offsets and decodes percent escapes as bytes)

const utf8 = new TextEncoder();
// WHATWG replacement of bad sequences = Rust `from_utf8_lossy`; keep a leading BOM as Rust does.
const utf8Lossy = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Rust `&s[byteOffset..]`. Rust panics (the call traps) when the offset is not on a
 * character boundary; so does this.
 */
const sliceFromByte = (s, byteOffset) => {
  const bytes = utf8.encode(s);
  if (byteOffset > bytes.length || (bytes[byteOffset] & 0xc0) === 0x80) {
    throw new Error(`byte index ${byteOffset} is not a char boundary`);
  }
  return utf8Lossy.decode(bytes.subarray(byteOffset));
};

const hexDigit = (b) => {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  return undefined;
};

/** `%XX` escapes decoded as bytes; invalid UTF-8 becomes U+FFFD; a lone `%` stays. */
export const percentDecode = (text) => {
  const bytes = utf8.encode(text);
  const out = [];
  for (let i = 0; i < bytes.length; ) {
    const hi = hexDigit(bytes[i + 1]);
    const lo = hexDigit(bytes[i + 2]);
    if (bytes[i] === 0x25 && hi !== undefined && lo !== undefined) {
      out.push(hi * 16 + lo);
      i += 3;
    } else {
      out.push(bytes[i]);
      i += 1;
    }
  }
  return utf8Lossy.decode(Uint8Array.from(out));
};

// ---------------------------------------------------------------------------------
// Keywords (5.2.4.2.4: "the keyword for session 'accept' or 'reject' in the replying
// text ... is interpreted by the IWF")

/** The words of `text`, lower-cased, split on anything that is not a letter or digit. */
export const words = (text) => {
  const out = [];
  let word = '';
  for (const c of text) {
    if (isAlphanumeric(c.codePointAt(0))) {
      word += c;
    } else if (word !== '') {
      out.push(toLowercase(word));
      word = '';
    }
  }
  if (word !== '') out.push(toLowercase(word));
  return out;
};

/**
 * The first line of `text` that carries words: skips blank lines, quoted lines (`>`),
 * and stops at a signature separator (`-- `, RFC 3676 4.3). Lines split on `\n` as
 * Rust `str::lines` does; a trailing `\r` goes with the trimming.
 */
export const firstMeaningfulLine = (text) => {
  for (const line of text.split('\n')) {
    const trimmed = trim(line);
    if (trimEnd(line) === '--') return undefined; // nothing of the answer below
    if (trimmed === '' || trimmed.startsWith('>')) continue;
    if (words(trimmed).length > 0) return trimmed;
  }
  return undefined;
};

const startsWithSeq = (haystack, start, needle) =>
  haystack.length - start >= needle.length && needle.every((w, i) => haystack[start + i] === w);

/**
 * Whether the first meaningful line of `text` starts with one of `keywords`, as whole
 * words, within its first `within` words (1 = must be the first word).
 */
export const answerStartsWith = (text, keywords, within) => {
  const line = firstMeaningfulLine(text);
  if (line === undefined) return false;
  const lineWords = words(line);
  const starts = Math.min(within, lineWords.length);
  return keywords.some((keyword) => {
    const key = words(keyword);
    if (key.length === 0) return false;
    for (let start = 0; start < starts; start++) {
      if (startsWithSeq(lineWords, start, key)) return true;
    }
    return false;
  });
};

/** Whether `text` is, in substance, only one of `keywords` ("Leave!", "  LEAVE  "). */
export const isOnly = (text, keywords) => {
  const line = firstMeaningfulLine(text);
  if (line === undefined) return false;
  const lineWords = words(line);
  return keywords.some((keyword) => {
    const key = words(keyword);
    return key.length === lineWords.length && startsWithSeq(lineWords, 0, key);
  });
};

// ---------------------------------------------------------------------------------
// Addresses (5.2.4.1: the CPM <-> e-mail address mapping is the provider's)

const SCHEME = /^[A-Za-z][A-Za-z0-9+\-.]*$/;

/** The scheme of a URI, lower-cased (`"sip"`, `"tel"`, ...), if it has one. */
export const scheme = (uri) => {
  const parts = splitOnce(trim(uri), ':');
  return parts && SCHEME.test(parts[0]) ? asciiLower(parts[0]) : undefined;
};

/** `<uri>` without any number of `<` / `>` and the white space around and inside them. */
const unbracket = (uri) => trim(trimEndChar(trimStartChar(trim(uri), '<'), '>'));

/**
 * The user part of a `sip:`/`sips:` URI (before `@`), the number of a `tel:` URI, or
 * the local part of a `mailto:` URI; parameters and headers removed, percent-decoded.
 */
export const userPart = (uri) => {
  const u = unbracket(uri);
  const s = scheme(u);
  if (s === undefined) return undefined;
  const rest = sliceFromByte(u, utf8.encode(s).length + 1);
  let user;
  switch (s) {
    case 'sip':
    case 'sips': {
      const parts = splitOnce(rest, '@');
      if (parts === undefined) return undefined;
      user = parts[0].split(';')[0];
      break;
    }
    case 'tel':
      user = rest.split(';')[0];
      break;
    case 'mailto':
      user = rest.split('?')[0].split('@')[0];
      break;
    default:
      return undefined;
  }
  const decoded = percentDecode(user);
  return decoded === '' ? undefined : decoded;
};

/** The address of a `mailto:` URI (RFC 6068), without headers (`?subject=`). */
export const mailtoAddress = (uri) => {
  const u = unbracket(uri);
  if (scheme(u) !== 'mailto') return undefined;
  const address = percentDecode(sliceFromByte(u, 'mailto:'.length).split('?')[0]);
  return isAddrSpec(address) ? address : undefined;
};

const ATEXT_SPECIALS = "!#$%&'*+-/=?^_`{|}~";
const isAsciiAlphanumeric = (c) => /^[A-Za-z0-9]$/.test(c);

/**
 * `text` as a dot-atom local part (RFC 5322 3.2.3): characters outside `atext` become
 * `-` (one per code point), runs of dots collapse, no dot first or last.
 */
export const toLocalPart = (text) => {
  let out = '';
  for (const c of text) {
    if (c === '.') {
      if (out !== '' && !out.endsWith('.')) out += '.';
    } else {
      out += isAsciiAlphanumeric(c) || ATEXT_SPECIALS.includes(c) ? c : '-';
    }
  }
  return trimEndChar(out, '.');
};

const ADDR_FORBIDDEN = '<>@(),;:"\\[]';
const clean = (s) =>
  s !== '' && [...s].every((c) => c >= '!' && c <= '~' && !ADDR_FORBIDDEN.includes(c));

/**
 * Whether `address` is a plain `local@domain` address with no space, control character,
 * angle bracket or second `@`: safe in a header and an SMTP command.
 */
export const isAddrSpec = (address) => {
  const parts = rsplitOnce(address, '@');
  if (parts === undefined) return false;
  const [local, domain] = parts;
  return (
    clean(local) &&
    clean(domain) &&
    !local.startsWith('.') &&
    !local.endsWith('.') &&
    !local.includes('..') &&
    domain.split('.').every((label) => label !== '')
  );
};
