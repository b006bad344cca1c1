//! RFC 6455 framing, server side, with no I/O.
//!
//! The decoder turns bytes read from a client into whole messages (reassembling fragments,
//! unmasking, validating UTF-8 of text) and control frames. The encoder writes unmasked server
//! frames; because a server frame is never masked, one encoded frame can be queued on every
//! socket that should receive it.
//!
//! Server frame headers are written by tungstenite's frame layer. Client frame headers are
//! parsed, and payloads unmasked, here: the library's parse costs more on every inbound frame
//! and its masking is not public (`cargo bench -p sockudo --bench hot_paths -- frame_layer`;
//! numbers at `parse_header` and `unmask`). The buffers and the reassembly are ours, so an idle socket
//! holds no buffer and a read is decoded straight from the shard's scratch buffer.

use tungstenite::protocol::frame::coding::OpCode;
use tungstenite::protocol::frame::FrameHeader;

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_bits(b: u8) -> Option<Opcode> {
        Some(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// One complete inbound unit: a data message or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message; the bytes are valid UTF-8.
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// The peer's close frame: its status code and reason, if it gave one.
    Close(Option<(u16, String)>),
}

/// Why the connection must be failed, with the close code RFC 6455 prescribes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// 1002: the peer broke the framing rules.
    Protocol(&'static str),
    /// 1007: a text message or close reason was not UTF-8.
    InvalidUtf8,
    /// 1009: a message exceeded the configured maximum.
    TooBig,
}

impl WsError {
    pub fn close_code(self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig => 1009,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            WsError::Protocol(why) => why,
            WsError::InvalidUtf8 => "Invalid UTF-8 in text message",
            WsError::TooBig => "Message too big",
        }
    }
}

/// A fragmented data message being reassembled.
struct Partial {
    opcode: Opcode,
    payload: Vec<u8>,
    /// Bytes of `payload` already known to be valid UTF-8 (text only), so each fragment is
    /// checked once and an invalid sequence fails before the message completes.
    utf8_checked: usize,
}

/// Reassembles client frames into messages. Holds memory only while a fragmented message is
/// in progress.
pub struct Decoder {
    max_message: usize,
    partial: Option<Box<Partial>>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder { max_message, partial: None }
    }

    /// Decodes one unit from the front of `buf`. Returns the unit (if one completed) and how
    /// many bytes were consumed; `Ok((None, 0))` means more bytes are needed. A consumed
    /// non-final fragment returns `(None, n)` with `n > 0`.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(Option<Incoming>, usize), WsError> {
        let Some(Header { fin, opcode, len, mask, size }) = parse_header(buf)? else { return Ok((None, 0)) };
        if opcode.is_control() {
            if !fin {
                return Err(WsError::Protocol("Fragmented control frame"));
            }
            if len > 125 {
                return Err(WsError::Protocol("Control frame payload over 125 bytes"));
            }
        } else {
            let so_far = self.partial.as_ref().map_or(0, |p| p.payload.len() as u64);
            if so_far + len > self.max_message as u64 {
                return Err(WsError::TooBig);
            }
            match (opcode, self.partial.is_some()) {
                (Opcode::Continuation, false) => {
                    return Err(WsError::Protocol("Continuation frame without a message to continue"))
                }
                (Opcode::Text | Opcode::Binary, true) => {
                    return Err(WsError::Protocol("New data frame before the fragmented message ended"))
                }
                _ => {}
            }
        }
        let len = len as usize;
        if buf.len() < size + len {
            return Ok((None, 0));
        }
        let consumed = size + len;
        let payload_in = &buf[size..consumed];

        if opcode.is_control() {
            let mut payload = payload_in.to_vec();
            unmask(&mut payload, mask);
            let unit = match opcode {
                Opcode::Ping => Incoming::Ping(payload),
                Opcode::Pong => Incoming::Pong,
                _ => Incoming::Close(parse_close(&payload)?),
            };
            return Ok((Some(unit), consumed));
        }

        if opcode != Opcode::Continuation && fin {
            // The common case: a whole message in one frame.
            let mut payload = payload_in.to_vec();
            unmask(&mut payload, mask);
            return Ok((Some(finish(opcode, payload)?), consumed));
        }

        let partial =
            self.partial.get_or_insert_with(|| Box::new(Partial { opcode, payload: Vec::new(), utf8_checked: 0 }));
        let start = partial.payload.len();
        partial.payload.extend_from_slice(payload_in);
        unmask(&mut partial.payload[start..], mask);
        if partial.opcode == Opcode::Text {
            check_utf8_prefix(partial)?;
        }
        if !fin {
            return Ok((None, consumed));
        }
        let Partial { opcode, payload, .. } = *self.partial.take().unwrap();
        Ok((Some(finish(opcode, payload)?), consumed))
    }
}

/// A client frame's header.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: Opcode,
    /// Payload length.
    pub len: u64,
    pub mask: [u8; 4],
    /// Bytes the header takes, the mask included.
    pub size: usize,
}

/// The client frame header at the front of `buf`, checked against the rules that need no
/// context (reserved bits, opcode, masking, length); `None` while incomplete.
///
/// Not tungstenite's `FrameHeader::parse`: it reads through `io::Read` on a cursor, out of
/// line, and costs more on every inbound frame (`frame_layer/parse_header_*` in
/// `benches/hot_paths.rs`: 7.3 ns here against 13.7 ns for a 100-byte frame, 8.0 against 20.7 ns
/// for 16 KiB).
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("Reserved bits set without a negotiated extension"));
    }
    let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(WsError::Protocol("Unknown opcode"))?;
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("Client frames must be masked"));
    }
    let (len, pos) = match b1 & 0x7f {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => {
            let l = u64::from_be_bytes(buf[2..10].try_into().expect("eight bytes"));
            if l >> 63 != 0 {
                return Err(WsError::Protocol("Frame length has the high bit set"));
            }
            (l, 10)
        }
        l => (l as u64, 2),
    };
    let Some(mask) = buf.get(pos..pos + 4) else { return Ok(None) };
    let mask = mask.try_into().expect("four bytes");
    Ok(Some(Header { fin: b0 & 0x80 != 0, opcode, len, mask, size: pos + 4 }))
}

fn finish(opcode: Opcode, payload: Vec<u8>) -> Result<Incoming, WsError> {
    if opcode == Opcode::Text {
        if std::str::from_utf8(&payload).is_ok() {
            Ok(Incoming::Text(payload))
        } else {
            Err(WsError::InvalidUtf8)
        }
    } else {
        Ok(Incoming::Binary(payload))
    }
}

/// Validates the newly appended part of a fragmented text message; a sequence cut at the end of
/// the fragment is fine (the next fragment completes it), an invalid one fails now.
fn check_utf8_prefix(p: &mut Partial) -> Result<(), WsError> {
    match std::str::from_utf8(&p.payload[p.utf8_checked..]) {
        Ok(_) => p.utf8_checked = p.payload.len(),
        Err(e) if e.error_len().is_none() => p.utf8_checked += e.valid_up_to(),
        Err(_) => return Err(WsError::InvalidUtf8),
    }
    Ok(())
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(WsError::Protocol("Close frame with a one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(WsError::Protocol("Invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// XORs `data` with the 4-byte client mask, eight bytes at a time.
// tungstenite's masking is private; its one public route, `Frame::format` with a masked header,
// costs one more allocation and copy: 62 ns instead of 23 ns for 100 bytes, 0.96 µs instead of
// 0.54 µs for 16 KiB (`frame_layer/unmask_*` in `benches/hot_paths.rs`).
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m64 = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let done = data.len() & !7;
    for c in data[..done].chunks_exact_mut(8) {
        let v = u64::from_ne_bytes((&*c).try_into().unwrap()) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in data[done..].iter_mut().enumerate() {
        *b ^= mask[(done + i) & 3];
    }
}

/// Appends the header of an unmasked, final server frame of `len` payload bytes.
pub fn encode_header(opcode: Opcode, len: usize, out: &mut Vec<u8>) {
    let header =
        FrameHeader { is_final: true, opcode: OpCode::from(opcode as u8), mask: None, ..FrameHeader::default() };
    header.format(len as u64, out).expect("writing to a Vec cannot fail");
}

/// A whole unmasked server frame.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_header(opcode, payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// A close frame with a status code and a reason (cut to fit the 125-byte control limit on a
/// character boundary).
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(Opcode::Close, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let n = payload.len();
        if n < 126 {
            out.push(0x80 | n as u8);
        } else if n <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask);
        out.extend_from_slice(&p);
        out
    }

    fn decode_all(d: &mut Decoder, mut buf: &[u8]) -> Result<Vec<Incoming>, WsError> {
        let mut out = vec![];
        loop {
            let (unit, n) = d.decode(buf)?;
            if let Some(u) = unit {
                out.push(u);
            }
            if n == 0 {
                return Ok(out);
            }
            buf = &buf[n..];
        }
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let frame = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut d = Decoder::new(1024);
        assert_eq!(d.decode(&frame).unwrap(), (Some(Incoming::Text(b"Hello".to_vec())), 11));
        assert_eq!(d.decode(&frame[..5]).unwrap(), (None, 0));
    }

    #[test]
    fn fragments_with_interleaved_ping_and_lengths() {
        let big = vec![b'a'; 70_000];
        let mut bytes = client_frame(false, 1, b"Hel");
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 0, b"lo"));
        bytes.extend(client_frame(true, 2, &big));
        bytes.extend(client_frame(true, 2, &big[..300]));
        let got = decode_all(&mut Decoder::new(1 << 20), &bytes).unwrap();
        assert_eq!(
            got,
            vec![
                Incoming::Ping(b"p".to_vec()),
                Incoming::Text(b"Hello".to_vec()),
                Incoming::Binary(big.clone()),
                Incoming::Binary(big[..300].to_vec())
            ]
        );
    }

    #[test]
    fn protocol_violations() {
        let mut d = Decoder::new(1024);
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(d.decode(&unmasked).unwrap_err().close_code(), 1002);
        let rsv = client_frame(true, 0x41, b"a");
        assert_eq!(Decoder::new(1024).decode(&rsv).unwrap_err().close_code(), 1002);
        let bad_op = client_frame(true, 3, b"a");
        assert_eq!(Decoder::new(1024).decode(&bad_op).unwrap_err().close_code(), 1002);
        let lone_cont = client_frame(true, 0, b"a");
        assert_eq!(Decoder::new(1024).decode(&lone_cont).unwrap_err().close_code(), 1002);
        let frag_ping = client_frame(false, 9, b"a");
        assert_eq!(Decoder::new(1024).decode(&frag_ping).unwrap_err().close_code(), 1002);
        let mut two_starts = client_frame(false, 1, b"a");
        two_starts.extend(client_frame(true, 1, b"b"));
        assert_eq!(decode_all(&mut Decoder::new(1024), &two_starts).unwrap_err().close_code(), 1002);
        let bad_close = client_frame(true, 8, &[0x03, 0xed]); // 1005 may not be sent
        assert_eq!(Decoder::new(1024).decode(&bad_close).unwrap_err().close_code(), 1002);
    }

    #[test]
    fn size_limit_is_checked_from_the_header() {
        let mut d = Decoder::new(100);
        // Only the header of a 1000-byte frame: rejected before the payload arrives.
        let header = &client_frame(true, 2, &[0u8; 1000])[..8];
        assert_eq!(d.decode(header).unwrap_err(), WsError::TooBig);
        let mut frags = client_frame(false, 2, &[0u8; 60]);
        frags.extend(client_frame(true, 0, &[0u8; 60]));
        assert_eq!(decode_all(&mut Decoder::new(100), &frags).unwrap_err(), WsError::TooBig);
    }

    #[test]
    fn utf8_fails_fast_inside_fragments_but_allows_split_sequences() {
        let euro = "€".as_bytes(); // 3 bytes
        let mut ok = client_frame(false, 1, &euro[..1]);
        ok.extend(client_frame(true, 0, &euro[1..]));
        assert_eq!(decode_all(&mut Decoder::new(100), &ok).unwrap(), vec![Incoming::Text(euro.to_vec())]);
        let mut d = Decoder::new(100);
        let bad = client_frame(false, 1, &[0xff]);
        assert_eq!(d.decode(&bad).unwrap_err(), WsError::InvalidUtf8);
        let close_bad_reason = client_frame(true, 8, &[0x03, 0xe8, 0xff]);
        assert_eq!(Decoder::new(100).decode(&close_bad_reason).unwrap_err(), WsError::InvalidUtf8);
    }

    #[test]
    fn encoder_lengths() {
        assert_eq!(&encode(Opcode::Text, b"hi")[..2], &[0x81, 2]);
        assert_eq!(&encode(Opcode::Text, &[0; 200])[..4], &[0x81, 126, 0, 200]);
        assert_eq!(&encode(Opcode::Binary, &[0; 70_000])[..2], &[0x82, 127]);
        let c = encode_close(4200, &"x".repeat(300));
        assert_eq!(c.len(), 2 + 125);
        assert_eq!(&c[2..4], &4200u16.to_be_bytes());
    }
}
