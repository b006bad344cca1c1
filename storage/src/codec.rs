//! Minimal binary reader/writer for the stored values, so a truncated or foreign value is
//! reported instead of misread.

use std::ops::RangeInclusive;

/// Decodes a value written as `version` byte + fields; `None` if the version differs, a field
/// is short, or bytes are left over.
pub(crate) fn decode_versioned<'a, T>(
    buf: &'a [u8],
    version: u8,
    fields: impl FnOnce(&mut Reader<'a>) -> Option<T>,
) -> Option<T> {
    decode_versions(buf, version..=version, |_, r| fields(r))
}

/// Like `decode_versioned` for a value still readable in older versions: `fields` is told
/// which version it reads.
pub(crate) fn decode_versions<'a, T>(
    buf: &'a [u8],
    versions: RangeInclusive<u8>,
    fields: impl FnOnce(u8, &mut Reader<'a>) -> Option<T>,
) -> Option<T> {
    peek_versions(buf, versions, |version, r| {
        let value = fields(version, r)?;
        r.finished().then_some(value)
    })
}

/// Like `decode_versions` but reads only a prefix of the fields.
pub(crate) fn peek_versions<'a, T>(
    buf: &'a [u8],
    versions: RangeInclusive<u8>,
    fields: impl FnOnce(u8, &mut Reader<'a>) -> Option<T>,
) -> Option<T> {
    let mut r = Reader { buf };
    let version = r.u8()?;
    versions.contains(&version).then_some(())?;
    fields(version, &mut r)
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?))
    }

    pub(crate) fn short_str(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.bytes(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.bytes(len)?.to_vec()).ok()
    }

    pub(crate) fn long_bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.bytes(4)?.try_into().ok()?) as usize;
        self.bytes(len)
    }

    pub(crate) fn long_str(&mut self) -> Option<String> {
        String::from_utf8(self.long_bytes()?.to_vec()).ok()
    }

    /// A value written by `put_optional`.
    pub(crate) fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u8()? {
            0 => Some(None),
            1 => read(self).map(Some),
            _ => None,
        }
    }

    fn finished(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Strings longer than a u16 length are cut at a char boundary rather than failing the append:
/// message ids and event names are bounded far below that by the protocol.
pub(crate) fn put_short_str(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

pub(crate) fn put_long_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes());
}

/// A presence byte, then the value when there is one.
pub(crate) fn put_optional<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

/// Strings without a protocol bound (data, extras, metadata) are stored whole.
pub(crate) fn put_long_str(out: &mut Vec<u8>, s: &str) {
    put_long_bytes(out, s.as_bytes());
}
