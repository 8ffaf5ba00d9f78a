//! The small subset of ASN.1 DER that crypto-conditions use: definite lengths, context tags,
//! unsigned INTEGERs and BIT STRINGs, and SET OF ordering. Parsing is strict (minimal
//! lengths and integers, no trailing bytes) so one fulfillment has exactly one encoding.

use thiserror::Error;

/// Why a DER byte string was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// Appends a tag-length-value element.
pub fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    write_len(out, content.len());
    out.extend_from_slice(content);
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Minimal two's-complement content octets of a non-negative integer.
pub fn uint_content(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut out = Vec::with_capacity(9);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// Parses the content octets of a non-negative INTEGER that fits in u64.
pub fn parse_uint(content: &[u8]) -> Result<u64, DerError> {
    match content {
        [] => Err(DerError("empty integer")),
        [b, ..] if b & 0x80 != 0 => Err(DerError("negative integer")),
        [0, next, ..] if next & 0x80 == 0 => Err(DerError("non-minimal integer")),
        _ => {
            let c = if content[0] == 0 { &content[1..] } else { content };
            if c.len() > 8 {
                return Err(DerError("integer too large"));
            }
            Ok(c.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
        }
    }
}

/// Sorts encoded SET OF elements as DER requires (by octets, shorter ones zero-padded).
pub fn sort_set_of(items: &mut [Vec<u8>]) {
    items.sort_by(|a, b| {
        let n = a.len().max(b.len());
        let pa = a.iter().copied().chain(std::iter::repeat(0)).take(n);
        let pb = b.iter().copied().chain(std::iter::repeat(0)).take(n);
        pa.cmp(pb)
    });
}

/// A cursor over a DER byte string.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// True when every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads one element; returns (tag, content).
    pub fn read_any(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self.buf.split_first().ok_or(DerError("unexpected end"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not used by crypto-conditions"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError("missing length"))?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return Err(DerError("bad length"));
            }
            let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            if rest[0] == 0 || len < 0x80 {
                return Err(DerError("non-minimal length"));
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(DerError("length exceeds input"));
        }
        let (content, after) = rest.split_at(len);
        self.buf = after;
        Ok((tag, content))
    }

    /// Reads one element that must carry `tag`.
    pub fn read(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (t, content) = self.read_any()?;
        if t != tag {
            return Err(DerError("unexpected tag"));
        }
        Ok(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal() {
        assert_eq!(uint_content(0), vec![0]);
        assert_eq!(uint_content(131072), vec![2, 0, 0]);
        assert_eq!(uint_content(0x80), vec![0, 0x80]);
        assert_eq!(parse_uint(&[0, 0x80]), Ok(0x80));
        assert!(parse_uint(&[0, 0x7f]).is_err());
        assert!(parse_uint(&[0x80]).is_err());
    }

    #[test]
    fn long_lengths_round_trip() {
        let content = vec![7u8; 300];
        let mut out = Vec::new();
        write_tlv(&mut out, 0xa0, &content);
        assert_eq!(&out[..4], &[0xa0, 0x82, 0x01, 0x2c]);
        let mut r = Reader::new(&out);
        assert_eq!(r.read(0xa0).unwrap(), &content[..]);
        assert!(r.is_empty());
    }
}
