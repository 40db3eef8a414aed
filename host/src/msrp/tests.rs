//! Codec tests: the MSRP frames of RFC 4975's figures byte for byte both ways, every split
//! point, the limits, malformed frames, and property tests (round trip, no panic).
//!
//! The figures were checked line by line against the text of RFC 4975 (September 2007,
//! without errata) as reproduced at tex2e.github.io/rfc-translater/html/rfc4975.html:
//! section 4 (Figure 2), 5.1 (Figure 3), 11.1 (steps 4 to 7), 11.2 (Figure 13), 11.4
//! (Figures 14 and 15), 11.5 and 11.6 (Figures 16 and 17). The RFC's 3-space indent is
//! dropped, lines end in CRLF, a blank line of the figure is one CRLF. Section 11.3 has
//! no frame of its own (it points to 5.1); 11.7 (Forked IM) shows only a SIP ladder.
//! Sections 7.1.x and 7.2 have no figures: the bodiless SEND and the 413 below are built
//! from their rules, not copied from the RFC.
//!
//! Several figures carry a Byte-Range whose range-end is not the body's length (noted at
//! each one). The frame codec does not compare the two: it decodes and re-encodes such a
//! frame unchanged. `Reassembler::push` does compare them and refuses the chunk with
//! `ChunkError::RangeMismatch` (a 400), see `rfc_byte_range_mismatches_reach_the_reassembler`.

use proptest::prelude::*;

use super::*;
use crate::sdp::MsrpUri;

const ALICE: &str = "msrp://alicepc.example.com:7777/iau39soe2843z;tcp";
const BOB: &str = "msrp://bob.example.com:8888/9di4eae923wzd;tcp";

/// RFC 4975 section 4, Figure 2: Alice's SEND. RFC inconsistency: the body is 23 bytes,
/// the Byte-Range says 1-25/25.
const S4_SEND: &str = "MSRP a786hjs2 SEND\r\n\
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
Message-ID: 87652491\r\n\
Byte-Range: 1-25/25\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hey Bob, are you there?\r\n\
-------a786hjs2$\r\n";

/// RFC 4975 section 4, Figure 2: Bob's 200.
const S4_200: &str = "MSRP a786hjs2 200 OK\r\n\
To-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
From-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
-------a786hjs2$\r\n";

/// RFC 4975 section 5.1, Figure 3, as printed: no To-Path, no From-Path (section 4: "Some
/// lines in the examples are removed for clarity and brevity"). Section 7.1 requires both,
/// so the decoder refuses these two; `S51_CHUNK1`/`S51_CHUNK2` add the paths of 11.1.
const S51_FIG3_CHUNK1: &str = "MSRP dkei38sd SEND\r\n\
Message-ID: 4564dpWd\r\n\
Byte-Range: 1-*/8\r\n\
Content-Type: text/plain\r\n\
\r\n\
abcd\r\n\
-------dkei38sd+\r\n";

const S51_FIG3_CHUNK2: &str = "MSRP dkei38ia SEND\r\n\
Message-ID: 4564dpWd\r\n\
Byte-Range: 5-8/8\r\n\
Content-Type: text/plain\r\n\
\r\n\
EFGH\r\n\
-------dkei38ia$\r\n";

/// RFC 4975 section 5.1, Figure 3, first chunk, with To-Path and From-Path added.
const S51_CHUNK1: &str = "MSRP dkei38sd SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 4564dpWd\r\n\
Byte-Range: 1-*/8\r\n\
Content-Type: text/plain\r\n\
\r\n\
abcd\r\n\
-------dkei38sd+\r\n";

/// RFC 4975 section 5.1, Figure 3, second and last chunk (its own transaction id,
/// dkei38ia), with To-Path and From-Path added.
const S51_CHUNK2: &str = "MSRP dkei38ia SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 4564dpWd\r\n\
Byte-Range: 5-8/8\r\n\
Content-Type: text/plain\r\n\
\r\n\
EFGH\r\n\
-------dkei38ia$\r\n";

/// Not an RFC figure: a bodiless SEND built from RFC 4975 section 7.1 (no Content-Type,
/// end-line right after the last header) and 7.1.1 ("1-0/0"), with the ids of section 4.
const BODILESS_SEND: &str = "MSRP a786hjs2 SEND\r\n\
To-Path: msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp\r\n\
From-Path: msrp://atlanta.example.com:7654/jshA7weztas;tcp\r\n\
Message-ID: 87652491\r\n\
Byte-Range: 1-0/0\r\n\
-------a786hjs2$\r\n";

/// RFC 4975 section 11.1, step 4: Alice's SEND. RFC inconsistency: the body is 14 bytes,
/// the Byte-Range says 1-16/16.
const S111_SEND: &str = "MSRP d93kswow SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-16/16\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hi, I'm Alice!\r\n\
-------d93kswow$\r\n";

/// RFC 4975 section 11.1, step 5: Bob's 200.
const S111_200: &str = "MSRP d93kswow 200 OK\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
-------d93kswow$\r\n";

/// RFC 4975 section 11.1, step 6: Bob's SEND (two spaces after "Alice!"). RFC
/// inconsistency: the body is 20 bytes, the Byte-Range says 1-21/21.
const S111_BOB_SEND: &str = "MSRP dkei38sd SEND\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
Message-ID: 456s9wlk3\r\n\
Byte-Range: 1-21/21\r\n\
Content-Type: text/plain\r\n\
\r\n\
Hi, Alice!  I'm Bob!\r\n\
-------dkei38sd$\r\n";

/// RFC 4975 section 11.1, step 7: Alice's 200.
const S111_ALICE_200: &str = "MSRP dkei38sd 200 OK\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
-------dkei38sd$\r\n";

/// RFC 4975 section 11.2, Figure 13 (the "_http..._" DOCTYPE URI is as printed). RFC
/// inconsistency: the body is 384 bytes with CRLF line ends (372 with LF), the Byte-Range
/// says 1-374/374.
const S112_XHTML: &str = concat!(
    "MSRP dsdfoe38sd SEND\r\n",
    "To-Path: msrp://alice.example.com:7777/iau39soe2843z;tcp\r\n",
    "From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n",
    "Message-ID: 456so39s\r\n",
    "Byte-Range: 1-374/374\r\n",
    "Content-Type: application/xhtml+xml\r\n",
    "\r\n",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n",
    "<!DOCTYPE html\r\n",
    "PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\"\r\n",
    "\"_http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd_\">\r\n",
    "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\r\n",
    "  <head>\r\n",
    "    <title>FY2005 Results</title>\r\n",
    "</head>\r\n",
    "  <body>\r\n",
    "   <p>See the results at <a\r\n",
    "href=\"http://example.org/\">example.org</a>.</p>\r\n",
    "  </body>\r\n",
    "</html>\r\n",
    "-------dsdfoe38sd$\r\n",
);

/// RFC 4975 section 11.4, Figure 14: the first chunk of a message/cpim message (137
/// bytes, matching its Byte-Range).
const S114_CHUNK1: &str = "MSRP d93kswow SEND\r\n\
To-Path: msrp://bobpc.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7654/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-137/148\r\n\
Content-Type: message/cpim\r\n\
\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>\r\n\
DateTime: 2006-05-15T15:02:31-03:00\r\n\
Content-Type: text/plain\r\n\
\r\n\
ABCD\r\n\
-------d93kswow+\r\n";

/// RFC 4975 section 11.4, Figure 15: the second and last chunk. RFC inconsistency: the
/// body is 10 bytes, the Byte-Range 138-148 says 11.
const S114_CHUNK2: &str = "MSRP op2nc9a SEND\r\n\
To-Path: msrp://bobpc.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7654/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 138-148/148\r\n\
Content-Type: message/cpim\r\n\
\r\n\
1234567890\r\n\
-------op2nc9a$\r\n";

/// RFC 4975 section 11.5: a system message (Failure-Report before Success-Report, as
/// printed). RFC inconsistency: the body is 37 bytes, the Byte-Range says 1-38/38.
const S115_SYSTEM: &str = "MSRP d93kswow SEND\r\n\
To-Path: msrp://alicepc.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-38/38\r\n\
Failure-Report: no\r\n\
Success-Report: no\r\n\
Content-Type: text/plain\r\n\
\r\n\
This conference will end in 5 minutes\r\n\
-------d93kswow$\r\n";

/// RFC 4975 section 11.6, Figure 16: a SEND asking for a positive report. RFC
/// inconsistency: the body is 121 bytes with CRLF line ends (117 with LF), the Byte-Range
/// says 1-106/106.
const S116_SEND: &str = "MSRP d93kswow SEND\r\n\
To-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
From-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-106/106\r\n\
Success-Report: yes\r\n\
Failure-Report: no\r\n\
Content-Type: text/html\r\n\
\r\n\
<html><body>\r\n\
<p>Here is that important link...\r\n\
<a href=\"http://www.example.com/foobar\">foobar</a>\r\n\
</p>\r\n\
</body></html>\r\n\
-------d93kswow$\r\n";

/// RFC 4975 section 11.6, Figure 17: the success REPORT.
const S116_REPORT: &str = "MSRP dkei38sd REPORT\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
Message-ID: 12339sdqwer\r\n\
Byte-Range: 1-106/106\r\n\
Status: 000 200 OK\r\n\
-------dkei38sd$\r\n";

/// Not an RFC figure: a 413 with a comment, built per RFC 4975 section 7.2 (response) and
/// 10.5 (413), with the paths of 11.1.
const BUILT_413: &str = "MSRP d93kswow 413 Message too large\r\n\
To-Path: msrp://alicepc.example.com:7777/iau39soe2843z;tcp\r\n\
From-Path: msrp://bob.example.com:8888/9di4eae923wzd;tcp\r\n\
-------d93kswow$\r\n";

const EXAMPLES: [&str; 16] = [
    S4_SEND,
    S4_200,
    S51_CHUNK1,
    S51_CHUNK2,
    BODILESS_SEND,
    S111_SEND,
    S111_200,
    S111_BOB_SEND,
    S111_ALICE_200,
    S112_XHTML,
    S114_CHUNK1,
    S114_CHUNK2,
    S115_SYSTEM,
    S116_SEND,
    S116_REPORT,
    BUILT_413,
];

fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = bytes.to_vec();
    let frame = Decoder::default()
        .decode(&mut buf)
        .unwrap()
        .expect("whole frame");
    assert!(buf.is_empty(), "left {:?}", String::from_utf8_lossy(&buf));
    frame
}

/// Feeds `bytes` in pieces of `step` bytes, collecting every frame decoded.
fn decode_in_pieces(bytes: &[u8], step: usize) -> Vec<Frame> {
    let mut dec = Decoder::default();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert!(buf.is_empty());
    frames
}

fn uri(s: &str) -> MsrpUri {
    MsrpUri::parse(s).unwrap()
}

#[test]
fn rfc_examples_decode_and_encode_byte_exact() {
    for ex in EXAMPLES {
        let f = decode_one(ex.as_bytes());
        assert_eq!(String::from_utf8(f.to_bytes().unwrap()).unwrap(), ex);
    }
}

#[test]
fn rfc_4975_s4_send_fields() {
    let f = decode_one(S4_SEND.as_bytes());
    assert_eq!(f.transact_id.as_str(), "a786hjs2");
    assert_eq!(f.method(), Some(&Method::Send));
    assert_eq!(
        f.to_path,
        vec![uri("msrp://biloxi.example.com:12763/kjhd37s2s20w2a;tcp")]
    );
    assert_eq!(f.message_id(), Some("87652491"));
    assert_eq!(
        f.byte_range(),
        Some(ByteRange {
            start: 1,
            end: Some(25),
            total: Some(25)
        })
    );
    let body = f.body.as_ref().unwrap();
    assert_eq!(body.content_type, "text/plain");
    assert_eq!(body.data, b"Hey Bob, are you there?");
    assert_eq!(f.flag, Flag::Complete);
    assert!(!f.success_report());
    assert_eq!(f.failure_report(), FailureReport::Yes);
}

#[test]
fn rfc_4975_s4_response_built_from_request() {
    let send = decode_one(S4_SEND.as_bytes());
    let ok = send.response(200, Some("OK"));
    assert_eq!(String::from_utf8(ok.to_bytes().unwrap()).unwrap(), S4_200);
}

#[test]
fn rfc_4975_s51_chunks_flags_and_ranges() {
    let c1 = decode_one(S51_CHUNK1.as_bytes());
    assert_eq!(c1.flag, Flag::More);
    assert_eq!(
        c1.byte_range(),
        Some(ByteRange {
            start: 1,
            end: None,
            total: Some(8)
        })
    );
    let c2 = decode_one(S51_CHUNK2.as_bytes());
    assert_eq!(c2.flag, Flag::Complete);
    let mut r = Reassembler::default();
    assert_eq!(r.push(&c1).unwrap(), Progress::Pending);
    match r.push(&c2).unwrap() {
        Progress::Complete(m) => {
            assert_eq!(m.data, b"abcdEFGH");
            assert_eq!(m.content_type.as_deref(), Some("text/plain"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc_4975_s51_figure3_as_printed_lacks_the_paths() {
    // Section 7.1: a request carries To-Path and From-Path; Figure 3 leaves both out.
    for ex in [S51_FIG3_CHUNK1, S51_FIG3_CHUNK2] {
        let e = decode_err(ex);
        assert_eq!(e.error, Error::Missing("To-Path"), "{ex}");
        assert!(!e.fatal);
    }
    // Everything else in the figure is what the decoder reads with the paths added.
    let c2 = decode_one(S51_CHUNK2.as_bytes());
    assert_eq!(c2.transact_id.as_str(), "dkei38ia");
    assert_eq!(c2.message_id(), Some("4564dpWd"));
}

#[test]
fn rfc_4975_s111_both_directions() {
    let alice = decode_one(S111_SEND.as_bytes());
    assert_eq!(
        String::from_utf8(alice.response(200, Some("OK")).to_bytes().unwrap()).unwrap(),
        S111_200
    );
    let bob = decode_one(S111_BOB_SEND.as_bytes());
    assert_eq!(bob.message_id(), Some("456s9wlk3"));
    assert_eq!(bob.body.as_ref().unwrap().data, b"Hi, Alice!  I'm Bob!");
    assert_eq!(
        String::from_utf8(bob.response(200, Some("OK")).to_bytes().unwrap()).unwrap(),
        S111_ALICE_200
    );
}

#[test]
fn rfc_4975_s112_xhtml_body() {
    let f = decode_one(S112_XHTML.as_bytes());
    assert_eq!(f.transact_id.as_str(), "dsdfoe38sd");
    let body = f.body.as_ref().unwrap();
    assert_eq!(body.content_type, "application/xhtml+xml");
    assert!(body.data.starts_with(b"<?xml version=\"1.0\""));
    assert!(body.data.ends_with(b"  </body>\r\n</html>"));
    assert_eq!(body.data.len(), 384);
}

#[test]
fn rfc_4975_s114_cpim_chunks() {
    let c1 = decode_one(S114_CHUNK1.as_bytes());
    assert_eq!(c1.flag, Flag::More);
    assert_eq!(
        c1.byte_range(),
        Some(ByteRange::parse("1-137/148").unwrap())
    );
    let body = c1.body.as_ref().unwrap();
    assert_eq!(body.content_type, "message/cpim");
    assert_eq!(body.data.len(), 137);
    let c2 = decode_one(S114_CHUNK2.as_bytes());
    assert_eq!(c2.flag, Flag::Complete);
    assert_eq!(c2.transact_id.as_str(), "op2nc9a");
    assert_eq!(c2.body.as_ref().unwrap().data, b"1234567890");
}

#[test]
fn rfc_4975_s115_system_message_keeps_header_order() {
    let f = decode_one(S115_SYSTEM.as_bytes());
    assert!(!f.success_report());
    assert_eq!(f.failure_report(), FailureReport::No);
    assert!(matches!(
        f.headers.as_slice(),
        [
            Header::MessageId(_),
            Header::ByteRange(_),
            Header::FailureReport(FailureReport::No),
            Header::SuccessReport(false),
        ]
    ));
}

/// What the module doc says of the figures whose Byte-Range does not fit their body: the
/// frame codec keeps them as they are (the byte-exact test), the reassembler refuses them.
/// RFC 4975 section 7.3.1 says a receiver SHOULD go by the payload's actual length when
/// the body is shorter than range-end; `Reassembler` is stricter than that.
#[test]
fn rfc_byte_range_mismatches_reach_the_reassembler() {
    for ex in [
        S4_SEND,
        S111_SEND,
        S111_BOB_SEND,
        S112_XHTML,
        S115_SYSTEM,
        S116_SEND,
    ] {
        let f = decode_one(ex.as_bytes());
        let e = Reassembler::default().push(&f).unwrap_err();
        assert!(matches!(e, ChunkError::RangeMismatch { .. }), "{e}");
        assert_eq!(e.status(), 400);
    }
    let mut r = Reassembler::default();
    assert_eq!(
        r.push(&decode_one(S114_CHUNK1.as_bytes())).unwrap(),
        Progress::Pending
    );
    let e = r.push(&decode_one(S114_CHUNK2.as_bytes())).unwrap_err();
    assert!(
        matches!(e, ChunkError::RangeMismatch { len: 10, .. }),
        "{e}"
    );
}

#[test]
fn rfc_4975_s116_reports() {
    let send = decode_one(S116_SEND.as_bytes());
    assert!(send.success_report());
    assert_eq!(send.failure_report(), FailureReport::No);
    assert!(
        send.body
            .as_ref()
            .unwrap()
            .data
            .ends_with(b"</body></html>")
    );
    let report = decode_one(S116_REPORT.as_bytes());
    assert_eq!(report.method(), Some(&Method::Report));
    assert_eq!(
        report.status(),
        Some(&Status {
            code: 200,
            comment: Some("OK".into())
        })
    );
    let r = decode_one(BUILT_413.as_bytes());
    assert_eq!(
        r.start,
        StartLine::Response {
            code: 413,
            comment: Some("Message too large".into())
        }
    );
}

#[test]
fn every_split_point_decodes_the_same() {
    let all: Vec<u8> = EXAMPLES.concat().into_bytes();
    let whole = decode_in_pieces(&all, all.len());
    assert_eq!(whole.len(), EXAMPLES.len());
    for step in 1..=all.len().min(64) {
        assert_eq!(decode_in_pieces(&all, step), whole, "step {step}");
    }
    // Each example cut in two at every offset.
    for ex in EXAMPLES {
        let want = decode_one(ex.as_bytes());
        for cut in 0..ex.len() {
            let mut dec = Decoder::default();
            let mut buf = ex.as_bytes()[..cut].to_vec();
            assert_eq!(dec.decode(&mut buf).unwrap(), None, "cut {cut}");
            buf.extend_from_slice(&ex.as_bytes()[cut..]);
            assert_eq!(
                dec.decode(&mut buf).unwrap(),
                Some(want.clone()),
                "cut {cut}"
            );
        }
    }
}

#[test]
fn rfc_4975_s116_report_built_from_send() {
    let send = decode_one(S116_SEND.as_bytes());
    let report = send.report(
        TransactId::new("dkei38sd").unwrap(),
        send.byte_range().unwrap(),
        Status {
            code: 200,
            comment: Some("OK".into()),
        },
    );
    assert_eq!(
        String::from_utf8(report.to_bytes().unwrap()).unwrap(),
        S116_REPORT
    );
}

#[test]
fn rfc_4975_s116_send_built() {
    let want = decode_one(S116_SEND.as_bytes());
    let built = Frame::send(
        want.transact_id.clone(),
        want.to_path.clone(),
        want.from_path.clone(),
        "12339sdqwer",
        ByteRange::parse("1-106/106").unwrap(),
        (true, FailureReport::No),
        want.body.clone(),
        Flag::Complete,
    );
    assert_eq!(
        String::from_utf8(built.to_bytes().unwrap()).unwrap(),
        S116_SEND
    );
}

#[test]
fn random_transact_ids_are_valid_and_differ() {
    let (a, b) = (TransactId::random(), TransactId::random());
    assert_ne!(a, b);
    assert_eq!(TransactId::new(a.as_str()), Some(a));
}

#[test]
fn unknown_method_is_kept_for_501() {
    let f = decode_one(
        format!("MSRP abc123 AUTH\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\n-------abc123$\r\n")
            .as_bytes(),
    );
    assert_eq!(f.method(), Some(&Method::Other("AUTH".into())));
    let answer = f.response(501, Some("Method not implemented"));
    assert_eq!(answer.to_path, vec![uri(ALICE)]);
    assert_eq!(answer.from_path, vec![uri(BOB)]);
}

#[test]
fn body_holding_a_false_end_line_is_body() {
    let ex = format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nMessage-ID: m123\r\n\
         Content-Type: text/plain\r\n\r\nx\r\n-------abc123X\r\n-------abc123$y\r\n\
         -------abc123$\r\n"
    );
    let f = decode_one(ex.as_bytes());
    assert_eq!(
        f.body.as_ref().unwrap().data,
        b"x\r\n-------abc123X\r\n-------abc123$y"
    );
    // The encoder is stricter than the decoder: any `CRLF -------id` in a body is refused.
    assert!(matches!(f.to_bytes(), Err(Error::EndLineInBody(_))));
    for step in 1..8 {
        assert_eq!(decode_in_pieces(ex.as_bytes(), step), vec![f.clone()]);
    }
}

#[test]
fn empty_body_and_multi_uri_paths() {
    let ex = format!(
        "MSRP abc123 SEND\r\nTo-Path: msrps://relay.example.com:2855;tcp {BOB}\r\n\
         From-Path: {ALICE}\r\nMessage-ID: m123\r\nByte-Range: 1-0/0\r\n\
         Content-Type: text/plain\r\n\r\n\r\n-------abc123$\r\n"
    );
    let f = decode_one(ex.as_bytes());
    assert_eq!(f.to_path.len(), 2);
    assert!(f.to_path[0].secure);
    assert_eq!(f.body.as_ref().unwrap().data, b"");
    assert_eq!(String::from_utf8(f.to_bytes().unwrap()).unwrap(), ex);
}

fn decode_err(bytes: &str) -> DecodeError {
    let mut buf = bytes.as_bytes().to_vec();
    Decoder::default().decode(&mut buf).unwrap_err()
}

#[test]
fn malformed_frames_give_typed_errors() {
    let e = decode_err("MSRP ab SEND\r\n");
    assert_eq!(e.error, Error::TransactId("ab".into()));
    assert!(e.fatal);
    let e = decode_err("HTTP/1.1 200 OK\r\n");
    assert!(matches!(e.error, Error::StartLine(_)));
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nFrom-Path: {ALICE}\r\n-------abc123$\r\n"
    ));
    assert_eq!(e.error, Error::Order("To-Path"));
    assert!(!e.fatal);
    assert_eq!(e.transact_id.unwrap().as_str(), "abc123");
    assert_eq!(e.method, Some(Method::Send));
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\n-------abc123$\r\n"
    ));
    assert_eq!(e.error, Error::Missing("From-Path"));
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nMessage-ID: m123\r\n-------abc123$\r\n"
    ));
    assert_eq!(e.error, Error::Missing("From-Path"));
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nByte-Range: 5-2/8\r\n-------abc123$\r\n"
    ));
    assert!(matches!(e.error, Error::HeaderValue(_)), "{e}");
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nTo-Path: {BOB}\r\n-------abc123$\r\n"
    ));
    assert_eq!(e.error, Error::Order("To-Path"));
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: http://x\r\nFrom-Path: {ALICE}\r\n-------abc123$\r\n"
    ));
    assert!(matches!(
        e.error,
        Error::Path {
            field: "To-Path",
            ..
        }
    ));
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\n\r\nhi\r\n-------abc123$\r\n"
    ));
    assert_eq!(e.error, Error::NoContentType);
}

#[test]
fn a_bad_request_with_paths_is_answered_400() {
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nByte-Range: x\r\n-------abc123$\r\n"
    ));
    let answer = e.response().expect("answerable");
    assert_eq!(
        String::from_utf8(answer.to_bytes().unwrap()).unwrap(),
        format!(
            "MSRP abc123 400 bad Byte-Range \"x\"\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\n-------abc123$\r\n"
        )
    );
    // No paths, or a response: nothing to answer.
    let e = decode_err(&format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\n-------abc123$\r\n"
    ));
    assert_eq!(e.response(), None);
    let e = decode_err(&format!(
        "MSRP abc123 200 OK\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nStatus: 1\r\n-------abc123$\r\n"
    ));
    assert!(e.paths.is_some());
    assert_eq!(e.response(), None);
}

#[test]
fn a_bad_frame_is_consumed_and_the_next_decodes() {
    let bad = format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nSuccess-Report: maybe\r\n-------abc123$\r\n"
    );
    let mut buf = format!("{bad}{S111_SEND}").into_bytes();
    let mut dec = Decoder::default();
    let e = dec.decode(&mut buf).unwrap_err();
    assert!(!e.fatal);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(decode_one(S111_SEND.as_bytes()))
    );
}

#[test]
fn limits_stop_buffering() {
    let limits = Limits {
        max_head_bytes: 200,
        max_headers: 4,
        max_body_bytes: 10,
    };
    let mut dec = Decoder::new(limits);
    let mut buf = b"MSRP abc123 SEND\r\nTo-Path: ".to_vec();
    buf.extend(std::iter::repeat_n(b'a', 300));
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(
        e.error,
        Error::TooLarge {
            what: "header section",
            limit: 200
        }
    );
    assert!(e.fatal);

    let mut dec = Decoder::new(limits);
    let mut buf = format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
    )
    .into_bytes();
    let e = dec.decode(&mut buf).unwrap_err();
    assert_eq!(
        e.error,
        Error::TooLarge {
            what: "header count",
            limit: 4
        }
    );

    // A body with no end-line: refused once past the limit, fed a byte at a time.
    let mut dec = Decoder::new(limits);
    let head = format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nContent-Type: text/plain\r\n\r\n"
    );
    let mut buf = head.into_bytes();
    let mut err = None;
    for z in std::iter::repeat_n(b'z', 40) {
        buf.push(z);
        match dec.decode(&mut buf) {
            Ok(None) => {}
            Ok(Some(f)) => panic!("{f:?}"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.expect("body limit hit");
    assert_eq!(
        e.error,
        Error::TooLarge {
            what: "body",
            limit: 10
        }
    );
    assert_eq!(e.transact_id.unwrap().as_str(), "abc123");

    // Exactly at the limit is fine.
    let ex = format!(
        "MSRP abc123 SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\nContent-Type: t/p\r\n\r\n0123456789\r\n-------abc123$\r\n"
    );
    let mut buf = ex.into_bytes();
    assert!(
        Decoder::new(Limits {
            max_head_bytes: 200,
            ..limits
        })
        .decode(&mut buf)
        .unwrap()
        .is_some()
    );
}

#[test]
fn encoder_refuses_end_line_in_body_and_sanitises() {
    let mut f = decode_one(S111_SEND.as_bytes());
    f.body.as_mut().unwrap().data = b"a\r\n-------d93kswow$\r\nb".to_vec();
    assert_eq!(
        f.to_bytes().unwrap_err(),
        Error::EndLineInBody(TransactId::new("d93kswow").unwrap())
    );
    let mut f = decode_one(S111_200.as_bytes());
    f.headers.push(Header::Other {
        name: "X-Evil".into(),
        value: "a\r\nTo-Path: x".into(),
    });
    let bytes = f.to_bytes().unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.contains("X-Evil: a  To-Path: x\r\n"));
    assert_eq!(decode_one(&bytes).headers.len(), 1);
}

#[test]
fn a_buffer_cut_short_by_the_caller_restarts_the_decoder() {
    let mut dec = Decoder::default();
    let mut buf = S111_SEND.as_bytes()[..150].to_vec();
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    // Shorter than what was scanned: a restart, not a panic.
    buf.clear();
    buf.extend_from_slice(&S4_200.as_bytes()[..10]);
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&S4_200.as_bytes()[10..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(decode_one(S4_200.as_bytes()))
    );
}

#[test]
fn transact_id_bounds() {
    assert!(TransactId::new("abc").is_some());
    assert!(TransactId::new(&"a".repeat(31)).is_some());
    assert!(TransactId::new(&"a".repeat(32)).is_none());
    assert!(TransactId::new("ab").is_none());
    assert!(TransactId::new("ab-c").is_none());
}

#[test]
fn byte_range_values() {
    for (s, ok) in [
        ("1-25/25", true),
        ("1-*/*", true),
        ("1-0/0", true),
        ("5-*/8", true),
        ("0-1/1", false),
        ("3-1/8", false),
        ("1-9/8", false),
        ("1-2", false),
        ("a-2/2", false),
        ("-1-2/2", false),
        ("1-18446744073709551615/*", true),
        ("18446744073709551615-18446744073709551615/*", true),
        ("1-18446744073709551616/*", false),
    ] {
        assert_eq!(ByteRange::parse(s).is_ok(), ok, "{s}");
        if ok {
            assert_eq!(ByteRange::parse(s).unwrap().to_string(), s);
        }
    }
}

// ---- property tests ----

fn arb_tid() -> impl Strategy<Value = TransactId> {
    "[a-zA-Z0-9]{3,31}".prop_map(|s| TransactId::new(&s).unwrap())
}

fn arb_uri() -> impl Strategy<Value = MsrpUri> {
    (
        "[a-z]{1,10}\\.example\\.com",
        1u16..,
        "[a-zA-Z0-9]{1,20}",
        any::<bool>(),
    )
        .prop_map(|(host, port, id, secure)| {
            let s = if secure { "msrps" } else { "msrp" };
            MsrpUri::parse(&format!("{s}://{host}:{port}/{id};tcp")).unwrap()
        })
}

fn arb_header() -> impl Strategy<Value = Header> {
    prop_oneof![
        "[a-zA-Z0-9][a-zA-Z0-9.+=-]{3,20}".prop_map(Header::MessageId),
        (
            1u64..1000,
            0u64..1000,
            prop::option::of(0u64..5000),
            any::<bool>()
        )
            .prop_map(|(start, len, total, star)| {
                let end = start + len - 1;
                Header::ByteRange(ByteRange {
                    start,
                    end: (!star).then_some(end),
                    total: total.map(|t| t + end),
                })
            }),
        any::<bool>().prop_map(Header::SuccessReport),
        prop_oneof![
            Just(FailureReport::Yes),
            Just(FailureReport::No),
            Just(FailureReport::Partial)
        ]
        .prop_map(Header::FailureReport),
        (
            100u16..1000,
            prop::option::of("[a-zA-Z][a-zA-Z ]{0,20}[a-zA-Z]")
        )
            .prop_map(|(code, comment)| Header::Status(Status { code, comment })),
        ("X-[A-Za-z]{1,10}", "[!-~]([ -~]{0,30}[!-~])?")
            .prop_map(|(name, value)| Header::Other { name, value }),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let start = prop_oneof![
        Just(StartLine::Request(Method::Send)),
        Just(StartLine::Request(Method::Report)),
        "[A-Z]{1,10}".prop_map(|m| StartLine::Request(Method::parse(&m).unwrap())),
        (100u16..1000, prop::option::of("[a-zA-Z][a-zA-Z ]{0,20}"))
            .prop_map(|(code, comment)| StartLine::Response { code, comment }),
    ];
    let body = prop::option::of((
        "[a-z]{1,8}/[a-z]{1,8}",
        prop::collection::vec(any::<u8>(), 0..300),
    ))
    .prop_map(|b| b.map(|(content_type, data)| Body { content_type, data }));
    let flag = prop_oneof![Just(Flag::Complete), Just(Flag::More), Just(Flag::Aborted)];
    (
        arb_tid(),
        start,
        prop::collection::vec(arb_uri(), 1..3),
        prop::collection::vec(arb_uri(), 1..3),
        prop::collection::vec(arb_header(), 0..6),
        body,
        flag,
    )
        .prop_map(
            |(transact_id, start, to_path, from_path, headers, body, flag)| Frame {
                transact_id,
                start,
                to_path,
                from_path,
                headers,
                body,
                flag,
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(frame in arb_frame(), step in 1usize..50) {
        let Ok(bytes) = frame.to_bytes() else {
            // The random body held its own end-line: the encoder's refusal is the answer.
            return Ok(());
        };
        let frames = decode_in_pieces(&bytes, step);
        prop_assert_eq!(frames, vec![frame]);
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000), step in 1usize..100) {
        let mut dec = Decoder::new(Limits { max_head_bytes: 512, max_headers: 8, max_body_bytes: 256 });
        let mut buf = Vec::new();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }

    #[test]
    fn decode_never_panics_on_near_frames(
        cut in 0usize..400,
        junk in prop::collection::vec(any::<u8>(), 0..40),
        at in 0usize..400,
    ) {
        let mut bytes = S116_SEND.as_bytes().to_vec();
        let at = at.min(bytes.len());
        bytes.splice(at..at, junk);
        bytes.truncate(cut.max(1).min(bytes.len()));
        let mut buf = bytes;
        let _ = Decoder::default().decode(&mut buf);
    }
}
