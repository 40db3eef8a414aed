"""The helpers of the Rust `policy-sdk`, ported to Python with the same edge cases.

- keywords (`policy-sdk/src/keywords.rs`): find the e-mail user's answer in a reply
  (5.2.4.2.4: "the keyword for session 'accept' or 'reject' in the replying text ... is
  interpreted by the IWF"), tolerant of case, punctuation, quoting and signatures;
- addresses (`policy-sdk/src/address.rs`): CPM URIs (`sip:`, `sips:`, `tel:`,
  `mailto:`) and e-mail mailboxes, for the 5.2.4.1 address mapping.

Where Rust and Python disagree on a primitive, the Rust meaning is kept:

- `trim` strips Unicode `White_Space`, not `str.isspace` (which adds U+001C-U+001F);
- `lines` splits on `\\n` and `\\r\\n` only, not on the other `str.splitlines` breaks;
- "alphanumeric" is Rust's `char::is_alphanumeric` (see `unicode_alnum`);
- ASCII-only operations (`to_ascii_lowercase`, `is_ascii_digit`, ...) stay ASCII-only;
- URIs are sliced by UTF-8 byte offsets, as Rust does: where Rust would panic on a
  slice inside a character, this raises (and the component traps the same way).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from unicode_alnum import is_alphanumeric

# Unicode White_Space: what Rust's `str::trim` removes.
WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

_ASCII_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ASCII_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_ATEXT_SPECIALS = "!#$%&'*+-/=?^_`{|}~"
_NOT_IN_ADDRESS = '<>@(),;:"\\[]'
_ASCII_LOWER = str.maketrans(_ASCII_LETTERS[:26], _ASCII_LETTERS[26:])


def trim(text: str) -> str:
    """Rust `str::trim`."""
    return text.strip(WHITE_SPACE)


def trim_end(text: str) -> str:
    """Rust `str::trim_end`."""
    return text.rstrip(WHITE_SPACE)


def lines(text: str) -> Iterator[str]:
    """Rust `str::lines`: split on `\\n`, drop one `\\r` before it, no empty last line."""
    *complete, last = text.split("\n")
    for line in complete:
        yield line[:-1] if line.endswith("\r") else line
    if last:
        yield last


def ascii_lower(text: str) -> str:
    """Rust `to_ascii_lowercase`: only A-Z change."""
    return text.translate(_ASCII_LOWER)


def eq_ignore_ascii_case(a: str, b: str) -> bool:
    """Rust `str::eq_ignore_ascii_case`."""
    return ascii_lower(a) == ascii_lower(b)


def _is_ascii_alphanumeric(c: str) -> bool:
    return c in _ASCII_LETTERS or c in _ASCII_DIGITS


def is_ascii_digits(text: str) -> bool:
    """Rust `text.chars().all(|c| c.is_ascii_digit())` (true for "")."""
    return all(c in _ASCII_DIGITS for c in text)


# ---------------------------------------------------------------------------------------
# keywords.rs


def words(text: str) -> Iterator[str]:
    """The words of `text`, lower-cased, split on anything that is not a letter or digit."""
    word: list[str] = []
    for c in text:
        if is_alphanumeric(c):
            word.append(c)
        elif word:
            yield "".join(word).lower()
            word = []
    if word:
        yield "".join(word).lower()


def first_meaningful_line(text: str) -> str | None:
    """The first line of `text` that carries words: skips blank lines, quoted lines
    (`>`), and stops at a signature separator (`-- `, RFC 3676 4.3)."""
    for line in lines(text):
        trimmed = trim(line)
        if trim_end(line) == "--":
            return None  # Signature separator: nothing of the answer below.
        if not trimmed or trimmed.startswith(">"):
            continue
        if next(words(trimmed), None) is not None:
            return trimmed
    return None


def answer_starts_with(text: str, keywords: Iterable[str], within: int) -> bool:
    """Whether the first meaningful line of `text` starts with one of `keywords`, as a
    whole word, within its first `within` words (1 = must be the first word).

    Keywords may have several words ("opt out"); they match as a sequence.
    """
    line = first_meaningful_line(text)
    if line is None:
        return False
    line_words = list(words(line))
    for keyword in keywords:
        key = list(words(keyword))
        if key and any(
            line_words[start : start + len(key)] == key
            for start in range(min(within, len(line_words)))
        ):
            return True
    return False


def is_only(text: str, keywords: Iterable[str]) -> bool:
    """Whether `text` is, in substance, only one of `keywords` ("Accept", "accept!",
    "  ACCEPT  "): a reply that says nothing else."""
    line = first_meaningful_line(text)
    if line is None:
        return False
    line_words = list(words(line))
    return any(list(words(keyword)) == line_words for keyword in keywords)


# ---------------------------------------------------------------------------------------
# address.rs


def scheme(uri: str) -> str | None:
    """The scheme of a URI, lower-cased (`"sip"`, `"tel"`, ...), if it has one."""
    name, colon, _ = trim(uri).partition(":")
    ok = (
        colon
        and name
        and name[0] in _ASCII_LETTERS
        and all(_is_ascii_alphanumeric(c) or c in "+-." for c in name)
    )
    return ascii_lower(name) if ok else None


def _after(uri: str, n_bytes: int) -> str:
    """Rust `&uri[n_bytes..]`: raises where Rust panics (inside a character)."""
    return uri.encode()[n_bytes:].decode()


def _unbracket(uri: str) -> str:
    """`<uri>` without the brackets and the white space around and inside them."""
    return trim(trim(uri).lstrip("<").rstrip(">"))


def user_part(uri: str) -> str | None:
    """The user part of a `sip:`/`sips:` URI (before `@`), the number of a `tel:` URI,
    or the address of a `mailto:` URI; parameters and headers removed. `None` if none."""
    uri = _unbracket(uri)
    name = scheme(uri)
    if name is None:
        return None
    rest = _after(uri, len(name) + 1)
    if name in ("sip", "sips"):
        user, at, _ = rest.partition("@")
        if not at:
            return None
        user = user.split(";")[0]
    elif name == "tel":
        user = rest.split(";")[0]
    elif name == "mailto":
        user = rest.split("?")[0].split("@")[0]
    else:
        return None
    user = _percent_decode(user)
    return user or None


def mailto_address(uri: str) -> str | None:
    """The address of a `mailto:` URI (RFC 6068), without headers (`?subject=`)."""
    uri = _unbracket(uri)
    if scheme(uri) != "mailto":
        return None
    address = _percent_decode(_after(uri, len("mailto:")).split("?")[0])
    return address if is_addr_spec(address) else None


def to_local_part(text: str) -> str:
    """`text` turned into a dot-atom local part (RFC 5322 3.2.3): characters outside
    `atext` become `-`, runs of dots collapse, and the result never starts or ends with
    a dot. `"+1 (555) 123"` becomes `"+1--555--123"`."""
    out: list[str] = []
    for c in text:
        if c == ".":
            if out and out[-1] != ".":
                out.append(".")
        else:
            out.append(c if _is_ascii_alphanumeric(c) or c in _ATEXT_SPECIALS else "-")
    return "".join(out).rstrip(".")


def is_addr_spec(address: str) -> bool:
    """Whether `address` is a plain `local@domain` address with no space, control
    character, angle bracket or second `@`: safe in a header and an SMTP command."""
    local, at, domain = address.rpartition("@")
    if not at:
        return False

    def clean(s: str) -> bool:
        return bool(s) and all("!" <= c <= "~" and c not in _NOT_IN_ADDRESS for c in s)

    return (
        clean(local)
        and clean(domain)
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and all(label for label in domain.split("."))
    )


def _percent_decode(text: str) -> str:
    """`%XX` to bytes, anything else kept; invalid UTF-8 becomes U+FFFD."""
    data = text.encode()
    out = bytearray()
    i = 0
    while i < len(data):
        pair = data[i + 1 : i + 3]
        if data[i] == ord("%") and len(pair) == 2 and all(chr(b) in _HEX_DIGITS for b in pair):
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return out.decode("utf-8", errors="replace")
