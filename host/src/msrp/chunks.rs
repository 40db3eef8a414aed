//! Reassembly of an MSRP message from its SEND chunks (RFC 4975 section 7.1.1 and 7.3.1):
//! by Message-ID, each chunk placed by its Byte-Range, in any order, duplicates
//! overwriting what they repeat, the message complete once its total is known (from
//! Byte-Range or from the `$` chunk's end) and every byte is in. A `#` chunk drops the
//! partial message; a late chunk of a message already delivered is reported as a
//! duplicate. A pure state machine: no clock; the endpoint drops what it gives up on.

use std::collections::{BTreeMap, HashMap, VecDeque};

use thiserror::Error;

use super::frame::{ByteRange, Flag, Frame};

/// Bounds on messages being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// The largest whole message accepted (beyond it, 413 per RFC 4975 section 7.1.1).
    pub max_message_bytes: u64,
    /// Messages partly received at once on one session.
    pub max_in_progress: usize,
}

impl Default for ChunkLimits {
    fn default() -> ChunkLimits {
        ChunkLimits {
            max_message_bytes: 10 * 1024 * 1024,
            max_in_progress: 16,
        }
    }
}

/// Why a chunk was refused; `status()` is the MSRP response code to send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("SEND without Message-ID")]
    NoMessageId,
    #[error("message {message_id} larger than {limit} bytes")]
    TooLarge { message_id: String, limit: u64 },
    #[error("more than {limit} messages in progress")]
    TooMany { limit: usize },
    #[error("message {message_id}: Byte-Range {range} does not fit the chunk of {len} bytes")]
    RangeMismatch {
        message_id: String,
        range: ByteRange,
        len: u64,
    },
    #[error("message {message_id}: total changed from {was} to {now}")]
    TotalChanged {
        message_id: String,
        was: u64,
        now: u64,
    },
}

impl ChunkError {
    /// The MSRP status for the SEND's response (RFC 4975 section 7.2 and 10).
    pub fn status(&self) -> u16 {
        match self {
            ChunkError::TooLarge { .. } => 413,
            // 413 as well: "stop sending", the receiver cannot hold another message.
            ChunkError::TooMany { .. } => 413,
            _ => 400,
        }
    }
}

/// A whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub message_id: String,
    /// The first chunk's Content-Type; `None` for a message without body (e.g. 1-0/0).
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// What a chunk led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The message is whole.
    Complete(Assembled),
    /// More chunks are needed.
    Pending,
    /// The sender aborted it (`#`); what had arrived is dropped.
    Aborted { message_id: String },
    /// A chunk of a message already delivered (a retransmission): answer it, drop it.
    Duplicate { message_id: String },
}

/// How many delivered Message-IDs are remembered to recognise late duplicates.
const REMEMBERED: usize = 64;

/// How to cut a message of `len` bytes into chunks of at most `max_chunk` bytes (RFC 4975
/// section 7.1.1): each chunk's Byte-Range (total known), the slice of the message it
/// carries and its flag (`+`, the last `$`). An empty message is one chunk `1-0/0`.
pub fn split(
    len: usize,
    max_chunk: usize,
) -> impl Iterator<Item = (ByteRange, std::ops::Range<usize>, Flag)> {
    let max_chunk = max_chunk.max(1);
    let count = len.div_ceil(max_chunk).max(1);
    (0..count).map(move |i| {
        let from = i * max_chunk;
        let to = (from + max_chunk).min(len);
        let range = ByteRange {
            start: from as u64 + 1,
            end: Some(to as u64),
            total: Some(len as u64),
        };
        let flag = if i + 1 == count {
            Flag::Complete
        } else {
            Flag::More
        };
        (range, from..to, flag)
    })
}

#[derive(Debug, Default)]
struct Partial {
    content_type: Option<String>,
    data: Vec<u8>,
    /// Received byte intervals, 1-based and inclusive, merged: start -> end.
    have: BTreeMap<u64, u64>,
    total: Option<u64>,
}

impl Partial {
    fn insert(&mut self, start: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = start + bytes.len() as u64 - 1;
        let needed = end as usize;
        if self.data.len() < needed {
            self.data.resize(needed, 0);
        }
        self.data[start as usize - 1..needed].copy_from_slice(bytes);
        let (mut lo, mut hi) = (start, end);
        let touching: Vec<(u64, u64)> = self
            .have
            .range(..=end.saturating_add(1))
            .filter(|&(_, &e)| e + 1 >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.have.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.have.insert(lo, hi);
    }

    fn complete(&self) -> bool {
        match self.total {
            Some(0) => true,
            Some(t) => self.have.get(&1) == Some(&t),
            None => false,
        }
    }
}

/// The messages of one session being put back together.
#[derive(Debug, Default)]
pub struct Reassembler {
    limits: ChunkLimits,
    partial: HashMap<String, Partial>,
    /// The last `REMEMBERED` messages delivered, oldest first.
    delivered: VecDeque<String>,
}

impl Reassembler {
    pub fn new(limits: ChunkLimits) -> Reassembler {
        Reassembler {
            limits,
            partial: HashMap::new(),
            delivered: VecDeque::new(),
        }
    }

    /// Messages partly received.
    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    /// Drops a partial message (e.g. when the endpoint gave up on it).
    pub fn discard(&mut self, message_id: &str) -> bool {
        self.partial.remove(message_id).is_some()
    }

    /// Takes one SEND chunk. A refused chunk drops its message's partial state too.
    pub fn push(&mut self, frame: &Frame) -> Result<Progress, ChunkError> {
        let message_id = frame
            .message_id()
            .ok_or(ChunkError::NoMessageId)?
            .to_string();
        if self.delivered.contains(&message_id) {
            return Ok(Progress::Duplicate { message_id });
        }
        let result = self.place(&message_id, frame);
        if matches!(result, Ok(Progress::Complete(_))) {
            if self.delivered.len() == REMEMBERED {
                self.delivered.pop_front();
            }
            self.delivered.push_back(message_id.clone());
        }
        if !matches!(result, Ok(Progress::Pending)) {
            self.partial.remove(&message_id);
        }
        result
    }

    fn place(&mut self, message_id: &str, frame: &Frame) -> Result<Progress, ChunkError> {
        let data = frame
            .body
            .as_ref()
            .map(|b| b.data.as_slice())
            .unwrap_or(&[]);
        let len = data.len() as u64;
        // No Byte-Range: the whole message in this one chunk (section 7.3.1).
        let range = frame.byte_range().unwrap_or(ByteRange {
            start: 1,
            end: None,
            total: None,
        });
        let limit = self.limits.max_message_bytes;
        let too_large = || ChunkError::TooLarge {
            message_id: message_id.to_string(),
            limit,
        };
        // Inclusive end; `start + len - 1` cannot underflow (start >= 1) but may overflow.
        let end = range.start.checked_add(len).ok_or_else(too_large)? - 1;
        let mismatch = || ChunkError::RangeMismatch {
            message_id: message_id.to_string(),
            range,
            len,
        };
        // An interrupted chunk (`#` or `+` with end `*`) may be shorter than announced;
        // a stated end must match what came.
        if range.end.is_some_and(|e| e != end) && frame.flag != Flag::Aborted {
            return Err(mismatch());
        }
        if frame.flag == Flag::Aborted {
            return Ok(Progress::Aborted {
                message_id: message_id.to_string(),
            });
        }
        if end > limit || range.total.is_some_and(|t| t > limit) {
            return Err(too_large());
        }
        if !self.partial.contains_key(message_id)
            && self.partial.len() >= self.limits.max_in_progress
        {
            return Err(ChunkError::TooMany {
                limit: self.limits.max_in_progress,
            });
        }
        let partial = self.partial.entry(message_id.to_string()).or_default();
        // The last chunk fixes the total when the Byte-Range said `*`.
        let total = range
            .total
            .or((frame.flag == Flag::Complete).then_some(end));
        if let Some(now) = total {
            if let Some(was) = partial.total.filter(|&w| w != now) {
                return Err(ChunkError::TotalChanged {
                    message_id: message_id.to_string(),
                    was,
                    now,
                });
            }
            if end > now {
                return Err(mismatch());
            }
            partial.total = Some(now);
        }
        if partial.content_type.is_none() {
            partial.content_type = frame.body.as_ref().map(|b| b.content_type.clone());
        }
        partial.insert(range.start, data);
        if !partial.complete() {
            return Ok(Progress::Pending);
        }
        let partial = self.partial.remove(message_id).expect("just placed");
        let mut data = partial.data;
        data.truncate(partial.total.unwrap_or(0) as usize);
        Ok(Progress::Complete(Assembled {
            message_id: message_id.to_string(),
            content_type: partial.content_type,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msrp::frame::{Body, Header, Method, StartLine, TransactId};
    use crate::sdp::MsrpUri;

    fn chunk(id: &str, range: &str, data: &[u8], flag: Flag) -> Frame {
        let uri = MsrpUri::parse("msrp://bob.example.com:8888/9di4eae923wzd;tcp").unwrap();
        Frame {
            transact_id: TransactId::new("abc123").unwrap(),
            start: StartLine::Request(Method::Send),
            to_path: vec![uri.clone()],
            from_path: vec![uri],
            headers: vec![
                Header::MessageId(id.into()),
                Header::ByteRange(ByteRange::parse(range).unwrap()),
            ],
            body: Some(Body {
                content_type: "text/plain".into(),
                data: data.to_vec(),
            }),
            flag,
        }
    }

    fn complete(p: Progress) -> Vec<u8> {
        match p {
            Progress::Complete(m) => m.data,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn single_chunk_without_byte_range() {
        let mut f = chunk("m1234", "1-2/2", b"hi", Flag::Complete);
        f.headers.retain(|h| !matches!(h, Header::ByteRange(_)));
        assert_eq!(complete(Reassembler::default().push(&f).unwrap()), b"hi");
    }

    #[test]
    fn out_of_order_chunks() {
        let mut r = Reassembler::default();
        let last = chunk("m1234", "7-9/9", b"ghi", Flag::Complete);
        assert_eq!(r.push(&last).unwrap(), Progress::Pending);
        assert_eq!(
            r.push(&chunk("m1234", "4-6/9", b"def", Flag::More))
                .unwrap(),
            Progress::Pending
        );
        let first = chunk("m1234", "1-3/9", b"abc", Flag::More);
        assert_eq!(complete(r.push(&first).unwrap()), b"abcdefghi");
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn gap_keeps_the_message_pending() {
        let mut r = Reassembler::default();
        assert_eq!(
            r.push(&chunk("m1234", "1-3/9", b"abc", Flag::More))
                .unwrap(),
            Progress::Pending
        );
        let last = chunk("m1234", "7-9/9", b"ghi", Flag::Complete);
        assert_eq!(r.push(&last).unwrap(), Progress::Pending);
        assert_eq!(r.in_progress(), 1);
        assert!(r.discard("m1234"));
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn duplicate_and_overlapping_ranges() {
        let mut r = Reassembler::default();
        let c1 = chunk("m1234", "1-4/6", b"abcd", Flag::More);
        assert_eq!(r.push(&c1).unwrap(), Progress::Pending);
        assert_eq!(r.push(&c1).unwrap(), Progress::Pending);
        let c2 = chunk("m1234", "3-6/6", b"cdef", Flag::Complete);
        assert_eq!(complete(r.push(&c2).unwrap()), b"abcdef");
        // A late retransmission is recognised, not started anew.
        assert_eq!(
            r.push(&c1).unwrap(),
            Progress::Duplicate {
                message_id: "m1234".into()
            }
        );
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn total_unknown_until_the_last_chunk() {
        let mut r = Reassembler::default();
        let c1 = chunk("m1234", "1-3/*", b"abc", Flag::More);
        assert_eq!(r.push(&c1).unwrap(), Progress::Pending);
        let c2 = chunk("m1234", "4-*/*", b"de", Flag::Complete);
        assert_eq!(complete(r.push(&c2).unwrap()), b"abcde");
    }

    #[test]
    fn abort_discards_the_partial_message() {
        let mut r = Reassembler::default();
        assert_eq!(
            r.push(&chunk("m1234", "1-3/9", b"abc", Flag::More))
                .unwrap(),
            Progress::Pending
        );
        let abort = chunk("m1234", "4-*/9", b"d", Flag::Aborted);
        assert_eq!(
            r.push(&abort).unwrap(),
            Progress::Aborted {
                message_id: "m1234".into()
            }
        );
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn oversize_message_is_413() {
        let limits = ChunkLimits {
            max_message_bytes: 8,
            max_in_progress: 2,
        };
        let mut r = Reassembler::new(limits);
        let e = r
            .push(&chunk("m1234", "1-3/9", b"abc", Flag::More))
            .unwrap_err();
        assert_eq!(
            e,
            ChunkError::TooLarge {
                message_id: "m1234".into(),
                limit: 8
            }
        );
        assert_eq!(e.status(), 413);
        // Total unknown: refused when the bytes pass the limit.
        assert_eq!(
            r.push(&chunk("m5678", "1-5/*", b"abcde", Flag::More))
                .unwrap(),
            Progress::Pending
        );
        let e = r
            .push(&chunk("m5678", "6-9/*", b"fghi", Flag::More))
            .unwrap_err();
        assert_eq!(e.status(), 413);
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn too_many_messages_in_progress() {
        let limits = ChunkLimits {
            max_message_bytes: 100,
            max_in_progress: 2,
        };
        let mut r = Reassembler::new(limits);
        for id in ["m0001", "m0002"] {
            assert_eq!(
                r.push(&chunk(id, "1-1/2", b"a", Flag::More)).unwrap(),
                Progress::Pending
            );
        }
        let e = r
            .push(&chunk("m0003", "1-1/2", b"a", Flag::More))
            .unwrap_err();
        assert_eq!(e, ChunkError::TooMany { limit: 2 });
        // The ones in progress still complete.
        assert_eq!(
            complete(
                r.push(&chunk("m0001", "2-2/2", b"b", Flag::Complete))
                    .unwrap()
            ),
            b"ab"
        );
    }

    #[test]
    fn inconsistent_ranges_are_400() {
        let mut r = Reassembler::default();
        let e = r
            .push(&chunk("m1234", "1-5/9", b"abc", Flag::More))
            .unwrap_err();
        assert!(matches!(e, ChunkError::RangeMismatch { .. }));
        assert_eq!(e.status(), 400);
        assert_eq!(
            r.push(&chunk("m1234", "1-3/9", b"abc", Flag::More))
                .unwrap(),
            Progress::Pending
        );
        let e = r
            .push(&chunk("m1234", "4-6/10", b"def", Flag::More))
            .unwrap_err();
        assert!(matches!(
            e,
            ChunkError::TotalChanged {
                was: 9,
                now: 10,
                ..
            }
        ));
        let mut f = chunk("m1234", "1-1/1", b"a", Flag::Complete);
        f.headers.remove(0);
        assert_eq!(r.push(&f).unwrap_err(), ChunkError::NoMessageId);
    }

    #[test]
    fn huge_range_start_is_413_not_overflow() {
        let f = chunk("m1234", &format!("{}-*/*", u64::MAX), b"ab", Flag::More);
        assert_eq!(Reassembler::default().push(&f).unwrap_err().status(), 413);
    }

    #[test]
    fn split_then_reassemble() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for max in [1, 7, 2048, 4999, 5000, 9000] {
            let mut r = Reassembler::default();
            let mut chunks: Vec<_> = split(data.len(), max).collect();
            assert_eq!(chunks.len(), data.len().div_ceil(max));
            chunks.reverse();
            let mut done = None;
            for (range, slice, flag) in chunks {
                let f = chunk("m1234", &range.to_string(), &data[slice], flag);
                if let Progress::Complete(m) = r.push(&f).unwrap() {
                    done = Some(m.data);
                }
            }
            assert_eq!(done.as_deref(), Some(data.as_slice()), "max {max}");
        }
        let empty: Vec<_> = split(0, 2048).collect();
        assert_eq!(
            empty,
            vec![(ByteRange::parse("1-0/0").unwrap(), 0..0, Flag::Complete)]
        );
    }

    proptest::proptest! {
        /// Any chunking, any order, any duplicates: the message comes out whole, once.
        #[test]
        fn any_order_and_duplicates_reassemble(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            max in 1usize..700,
            order in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..40),
        ) {
            let mut chunks: Vec<_> = split(data.len(), max).collect();
            // Duplicates picked by `order`, then the lot shuffled by it.
            for i in &order {
                chunks.push(chunks[i.index(chunks.len())].clone());
            }
            for (n, i) in order.iter().enumerate() {
                let len = chunks.len();
                chunks.swap(n % len, i.index(len));
            }
            let mut r = Reassembler::default();
            let mut done = Vec::new();
            for (range, slice, flag) in chunks {
                match r.push(&chunk("m1234", &range.to_string(), &data[slice], flag)).unwrap() {
                    Progress::Complete(m) => done.push(m.data),
                    Progress::Pending => {}
                    Progress::Duplicate { .. } => {}
                    Progress::Aborted { .. } => panic!("no abort sent"),
                }
            }
            proptest::prop_assert_eq!(done, vec![data]);
            proptest::prop_assert_eq!(r.in_progress(), 0);
        }
    }

    #[test]
    fn empty_message() {
        let mut f = chunk("m1234", "1-0/0", b"", Flag::Complete);
        f.body = None;
        match Reassembler::default().push(&f).unwrap() {
            Progress::Complete(m) => {
                assert!(m.data.is_empty());
                assert_eq!(m.content_type, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
