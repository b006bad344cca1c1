//! RFC 6455 frames for a client: masked frames out, an incremental parser for server frames in.
//!
//! The parser copies nothing in the common case: complete frames are handed out as slices of the
//! bytes just read. Only the tail of a frame split across reads is kept (in `pending`), and only a
//! fragmented message is assembled (in `frag`); both buffers keep their capacity between uses.
//!
//! Outgoing headers are written by tungstenite's frame layer; payloads are masked here, since its
//! masking is not public. Server frames are parsed here, as the server parses client frames,
//! because `FrameHeader::parse` costs 12-16 ns more per 100-byte frame (`cargo bench -p sockudo
//! --bench hot_paths -- frame_layer/decode`), and the harness reads every delivered frame: it
//! must stay cheaper than the server it measures.

use std::fmt;
use tungstenite::protocol::frame::coding::OpCode;
use tungstenite::protocol::frame::FrameHeader;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest message accepted from a server (the reference server caps at 4 MiB outbound).
pub const MAX_MESSAGE: usize = 64 << 20;

/// One complete message (data messages reassembled) or control frame from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// Close frame with its status code, if it carried one.
    Close(Option<u16>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    MaskedServerFrame,
    ReservedBits,
    BadOpcode(u8),
    BadControlFrame,
    UnexpectedContinuation,
    InterleavedDataFrame,
    TooBig,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket protocol error: {self:?}")
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    /// Offset of the payload from the start of the frame.
    header_len: usize,
    payload_len: usize,
}

/// Parses a frame header; `Ok(None)` when `buf` does not hold the whole frame yet.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::MaskedServerFrame);
    }
    let opcode = b0 & 0x0F;
    let (header_len, payload_len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as usize)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            if n > MAX_MESSAGE as u64 {
                return Err(FrameError::TooBig);
            }
            (10, n as usize)
        }
        n => (2, n as usize),
    };
    let fin = b0 & 0x80 != 0;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || payload_len > 125 {
                return Err(FrameError::BadControlFrame);
            }
        }
        op => return Err(FrameError::BadOpcode(op)),
    }
    if payload_len > MAX_MESSAGE {
        return Err(FrameError::TooBig);
    }
    if buf.len() < header_len + payload_len {
        return Ok(None);
    }
    Ok(Some(Header { fin, opcode, header_len, payload_len }))
}

/// Incremental parser of the server→client byte stream.
#[derive(Default)]
pub struct FrameReader {
    pending: Vec<u8>,
    frag: Vec<u8>,
    /// Opcode of the fragmented message being assembled, 0 when none.
    frag_opcode: u8,
}

impl FrameReader {
    /// Bytes buffered inside the reader.
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.pending.len() + self.frag.len()
    }

    /// Feeds bytes just read; calls `on` for every complete message, in order.
    pub fn feed(&mut self, input: &[u8], on: &mut dyn FnMut(Msg<'_>)) -> Result<(), FrameError> {
        let FrameReader { pending, frag, frag_opcode } = self;
        if pending.is_empty() {
            let used = parse_frames(input, frag, frag_opcode, on)?;
            pending.extend_from_slice(&input[used..]);
        } else {
            pending.extend_from_slice(input);
            let used = parse_frames(pending, frag, frag_opcode, on)?;
            pending.drain(..used);
        }
        Ok(())
    }
}

/// Parses every complete frame at the start of `buf`; returns how many bytes were consumed.
fn parse_frames(
    buf: &[u8],
    frag: &mut Vec<u8>,
    frag_opcode: &mut u8,
    on: &mut dyn FnMut(Msg<'_>),
) -> Result<usize, FrameError> {
    let mut pos = 0;
    while let Some(h) = parse_header(&buf[pos..])? {
        let payload = &buf[pos + h.header_len..pos + h.header_len + h.payload_len];
        pos += h.header_len + h.payload_len;
        match h.opcode {
            OP_PING => on(Msg::Ping(payload)),
            OP_PONG => on(Msg::Pong),
            OP_CLOSE => {
                let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                on(Msg::Close(code))
            }
            OP_TEXT | OP_BINARY => {
                if *frag_opcode != 0 {
                    return Err(FrameError::InterleavedDataFrame);
                }
                if h.fin {
                    on(if h.opcode == OP_TEXT { Msg::Text(payload) } else { Msg::Binary(payload) });
                } else {
                    *frag_opcode = h.opcode;
                    frag.clear();
                    frag.extend_from_slice(payload);
                }
            }
            _ => {
                // continuation
                if *frag_opcode == 0 {
                    return Err(FrameError::UnexpectedContinuation);
                }
                if frag.len() + payload.len() > MAX_MESSAGE {
                    return Err(FrameError::TooBig);
                }
                frag.extend_from_slice(payload);
                if h.fin {
                    let op = std::mem::replace(frag_opcode, 0);
                    on(if op == OP_TEXT { Msg::Text(frag) } else { Msg::Binary(frag) });
                    frag.clear();
                }
            }
        }
    }
    Ok(pos)
}

/// Appends one final, masked client frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let header =
        FrameHeader { is_final: true, opcode: OpCode::from(opcode), mask: Some(mask), ..FrameHeader::default() };
    header.format(payload.len() as u64, out).expect("writing to a Vec cannot fail");
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A fresh random masking key (RFC 6455 §5.3).
#[inline]
pub fn random_mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked (server) frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let n = payload.len();
        if n < 126 {
            v.push(n as u8);
        } else if n <= 65535 {
            v.push(126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[derive(Debug, PartialEq)]
    enum Owned {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    fn collect(r: &mut FrameReader, input: &[u8], out: &mut Vec<Owned>) -> Result<(), FrameError> {
        r.feed(input, &mut |m| {
            out.push(match m {
                Msg::Text(t) => Owned::Text(t.to_vec()),
                Msg::Binary(t) => Owned::Binary(t.to_vec()),
                Msg::Ping(t) => Owned::Ping(t.to_vec()),
                Msg::Pong => Owned::Pong,
                Msg::Close(c) => Owned::Close(c),
            })
        })
    }

    fn stream() -> (Vec<u8>, Vec<Owned>) {
        let big = vec![b'a'; 70_000];
        let mid = vec![b'b'; 300];
        let mut s = Vec::new();
        s.extend(server_frame(true, OP_TEXT, b"hello"));
        s.extend(server_frame(true, OP_TEXT, &mid));
        s.extend(server_frame(false, OP_TEXT, b"frag-"));
        s.extend(server_frame(true, OP_PING, b"p!")); // control frame inside a fragmented message
        s.extend(server_frame(false, OP_CONT, b"ment"));
        s.extend(server_frame(true, OP_CONT, b"ed"));
        s.extend(server_frame(true, OP_BINARY, &big));
        s.extend(server_frame(true, OP_PONG, b""));
        s.extend(server_frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
        let want = vec![
            Owned::Text(b"hello".to_vec()),
            Owned::Text(mid),
            Owned::Ping(b"p!".to_vec()),
            Owned::Text(b"frag-mented".to_vec()),
            Owned::Binary(big),
            Owned::Pong,
            Owned::Close(Some(1000)),
        ];
        (s, want)
    }

    #[test]
    fn whole_stream_in_one_read() {
        let (s, want) = stream();
        let (mut r, mut got) = (FrameReader::default(), Vec::new());
        collect(&mut r, &s, &mut got).unwrap();
        assert_eq!(got, want);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn stream_split_at_every_chunk_size() {
        let (s, want) = stream();
        for chunk in [1, 2, 3, 7, 64, 125, 126, 127, 1000, 4096] {
            let (mut r, mut got) = (FrameReader::default(), Vec::new());
            for c in s.chunks(chunk) {
                collect(&mut r, c, &mut got).unwrap();
            }
            assert_eq!(got, want, "chunk size {chunk}");
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn protocol_errors() {
        let mut r = FrameReader::default();
        assert_eq!(collect(&mut r, &[0x81, 0x81, 0, 0, 0, 0, b'x'], &mut vec![]), Err(FrameError::MaskedServerFrame));
        let mut r = FrameReader::default();
        assert_eq!(collect(&mut r, &[0xC1, 0x00], &mut vec![]), Err(FrameError::ReservedBits));
        let mut r = FrameReader::default();
        assert_eq!(
            collect(&mut r, &server_frame(true, OP_CONT, b"x"), &mut vec![]),
            Err(FrameError::UnexpectedContinuation)
        );
        let mut r = FrameReader::default();
        assert_eq!(collect(&mut r, &server_frame(false, OP_PING, b"x"), &mut vec![]), Err(FrameError::BadControlFrame));
        let mut r = FrameReader::default();
        let mut s = server_frame(false, OP_TEXT, b"a");
        s.extend(server_frame(true, OP_TEXT, b"b"));
        assert_eq!(collect(&mut r, &s, &mut vec![]), Err(FrameError::InterleavedDataFrame));
        let mut r = FrameReader::default();
        assert_eq!(collect(&mut r, &[0x83, 0x00], &mut vec![]), Err(FrameError::BadOpcode(3)));
    }

    #[test]
    fn client_frames_are_masked() {
        for n in [0usize, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mask = [0x12, 0x34, 0x56, 0x78];
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, mask);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80, "mask bit set");
            let (hl, len) = match out[1] & 0x7F {
                126 => (4, u16::from_be_bytes([out[2], out[3]]) as usize),
                127 => (10, u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize),
                l => (2, l as usize),
            };
            assert_eq!(len, n);
            assert_eq!(&out[hl..hl + 4], &mask);
            let unmasked: Vec<u8> = out[hl + 4..].iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect();
            assert_eq!(unmasked, payload);
        }
    }
}
