//! The MSRP codec, chunk reassembly and CPIM together, through the public API only, the
//! way the endpoint will use them: an F4 chat message arriving in chunks over one
//! connection, and an F5 message going out chunked with a Success-Report answered.

use iwf::cpim::{self, Address};
use iwf::msrp::{
    Body, ByteRange, Decoder, FailureReport, Flag, Frame, Method, Progress, Reassembler, Status,
    TransactId, split,
};
use iwf::sdp::MsrpUri;

fn uri(s: &str) -> MsrpUri {
    MsrpUri::parse(s).unwrap()
}

fn cpim_text(text: &str) -> cpim::Message {
    let mut m = cpim::Message::text(
        Address::new(Some("Alice"), "sip:+15550001@ims.example.com"),
        Address::new(None, "sip:bob@mail.example.org"),
        text,
    );
    m.date_time = Some(cpim::parse_date_time("2026-11-26T12:16:49+01:00").unwrap());
    m.ns.push(("imdn".into(), cpim::IMDN_NS.into()));
    m.other.push(("imdn.Message-ID".into(), "Qw3rTy12".into()));
    m
}

#[test]
fn f4_chunked_cpim_send_arrives_in_pieces_and_is_reassembled() {
    let peer = uri("msrp://ue.example.com:7777/iau39soe2843z;tcp");
    let iwf = uri("msrp://iwf.example.net:2855/9di4eae923wzd;tcp");
    let text = "x".repeat(5000);
    let body = cpim_text(&text).to_bytes();

    // The CPM side sends the message in 2048-byte chunks.
    let mut wire = Vec::new();
    for (range, slice, flag) in split(body.len(), 2048) {
        let frame = Frame::send(
            TransactId::random(),
            vec![iwf.clone()],
            vec![peer.clone()],
            "m7a8b9c0",
            range,
            (true, FailureReport::Yes),
            Some(Body {
                content_type: "message/cpim".into(),
                data: body[slice].to_vec(),
            }),
            flag,
        );
        wire.extend(frame.to_bytes().unwrap());
    }

    // The IWF reads it 100 bytes at a time, answers each chunk 200, reports success.
    let mut decoder = Decoder::default();
    let mut chunks = Reassembler::default();
    let mut buf = Vec::new();
    let (mut answers, mut message) = (Vec::new(), None);
    for piece in wire.chunks(100) {
        buf.extend_from_slice(piece);
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            assert_eq!(frame.method(), Some(&Method::Send));
            answers.push(frame.response(200, Some("OK")));
            if let Progress::Complete(m) = chunks.push(&frame).unwrap() {
                assert!(frame.success_report());
                let report = frame.report(
                    TransactId::random(),
                    ByteRange::parse(&format!("1-{0}/{0}", m.data.len())).unwrap(),
                    Status {
                        code: 200,
                        comment: Some("OK".into()),
                    },
                );
                assert_eq!(report.to_path, vec![peer.clone()]);
                message = Some(m);
            }
        }
    }
    assert_eq!(answers.len(), 3);
    assert!(answers.iter().all(|a| a.to_path == vec![peer.clone()]));
    let m = message.expect("message complete");
    assert_eq!(m.content_type.as_deref(), Some("message/cpim"));
    let cpim = cpim::Message::parse(&m.data).unwrap();
    assert_eq!(cpim.body, text.as_bytes());
    assert_eq!(cpim.imdn_message_id(), Some("Qw3rTy12"));
    assert_eq!(
        cpim::format_date_time(&cpim.date_time.unwrap()),
        "2026-11-26T12:16:49+01:00"
    );
}

#[test]
fn an_aborted_message_is_dropped_and_the_next_one_delivered() {
    let a = uri("msrp://a.example.com:1/s1;tcp");
    let b = uri("msrp://b.example.com:2/s2;tcp");
    let frame = |id: &str, range: &str, data: &[u8], flag| {
        Frame::send(
            TransactId::random(),
            vec![b.clone()],
            vec![a.clone()],
            id,
            ByteRange::parse(range).unwrap(),
            (false, FailureReport::Yes),
            Some(Body {
                content_type: "text/plain".into(),
                data: data.to_vec(),
            }),
            flag,
        )
    };
    let mut wire = Vec::new();
    for f in [
        frame("m0000001", "1-3/6", b"abc", Flag::More),
        frame("m0000001", "4-*/6", b"d", Flag::Aborted),
        frame("m0000002", "1-2/2", b"hi", Flag::Complete),
    ] {
        wire.extend(f.to_bytes().unwrap());
    }
    let (mut decoder, mut chunks) = (Decoder::default(), Reassembler::default());
    let mut out = Vec::new();
    while let Some(f) = decoder.decode(&mut wire).unwrap() {
        out.push(chunks.push(&f).unwrap());
    }
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Progress::Pending);
    assert!(matches!(&out[1], Progress::Aborted { message_id } if message_id == "m0000001"));
    assert!(matches!(&out[2], Progress::Complete(m) if m.data == b"hi"));
    assert_eq!(chunks.in_progress(), 0);
}
