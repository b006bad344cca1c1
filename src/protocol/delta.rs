//! Delta compression on the wire (`docs/protocol/v2.md#delta-compression`): the algorithms,
//! the subscribe option, and the frames. A delta turns the previous frame a socket got for the
//! same base key (its exact bytes) into the new frame's exact bytes; the delta markers
//! (`__delta_seq`, `__conflation_key`) are added to full frames and are no part of either.

use super::outbound::{push_json_str, Dialect};
use base64::Engine;
use sonic_rs::{JsonValueTrait, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// The Fossil SCM delta format.
    Fossil,
    /// VCDIFF (RFC 3284), as xdelta3 writes it.
    Xdelta3,
}

impl Algorithm {
    /// `fossil`, `xdelta3` or `vcdiff`, in any case.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fossil" => Some(Algorithm::Fossil),
            "xdelta3" | "vcdiff" => Some(Algorithm::Xdelta3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Fossil => "fossil",
            Algorithm::Xdelta3 => "xdelta3",
        }
    }

    /// The delta from `base` to `target`, base64 (standard alphabet); `None` if encoding failed.
    pub fn encode(self, base: &[u8], target: &[u8]) -> Option<String> {
        let raw = match self {
            Algorithm::Fossil => fossil_delta::delta(target, base),
            Algorithm::Xdelta3 => {
                // The Ably decoder clients use reads RFC 3284 windows without the optional
                // Adler-32 trailer.
                let opts = oxidelta::compress::encoder::CompressOptions { checksum: false, ..Default::default() };
                oxidelta::compress::encoder::encode_all(Vec::new(), base, target, opts).ok()?
            }
        };
        Some(base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// A subscribe's `delta` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Deltas on this channel, with this algorithm or the connection's (else the server's).
    On(Option<Algorithm>),
    Off,
}

impl Choice {
    /// `true`/`false`, an algorithm name, `"disabled"`/`"false"`/`"none"`, or
    /// `{"enabled": bool, "algorithm": name}`.
    pub fn parse(v: &Value) -> Result<Choice, String> {
        if let Some(b) = v.as_bool() {
            return Ok(if b { Choice::On(None) } else { Choice::Off });
        }
        if let Some(s) = v.as_str() {
            return match s.trim().to_ascii_lowercase().as_str() {
                "disabled" | "false" | "none" => Ok(Choice::Off),
                "true" | "enabled" => Ok(Choice::On(None)),
                other => Algorithm::parse(other)
                    .map(|a| Choice::On(Some(a)))
                    .ok_or_else(|| format!("delta: unknown algorithm {s:?} (fossil, xdelta3)")),
            };
        }
        if v.is_object() {
            let algorithm = match v.get("algorithm").filter(|a| !a.is_null()) {
                None => None,
                Some(a) => {
                    let name = a.as_str().ok_or("delta.algorithm must be a string")?;
                    Some(
                        Algorithm::parse(name)
                            .ok_or_else(|| format!("delta: unknown algorithm {name:?} (fossil, xdelta3)"))?,
                    )
                }
            };
            return match v.get("enabled").map(|e| e.as_bool()) {
                None | Some(Some(true)) => Ok(Choice::On(algorithm)),
                Some(Some(false)) => Ok(Choice::Off),
                Some(None) => Err("delta.enabled must be true or false".into()),
            };
        }
        Err("delta must be true, false, an algorithm name or {enabled, algorithm}".into())
    }
}

/// A full frame in a delta stream: `frame` with `"__delta_seq"` (and `"__conflation_key"`).
pub fn with_seq(frame: &[u8], seq: u64, conflation_key: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 48);
    out.extend_from_slice(&frame[..frame.len() - 1]);
    out.extend_from_slice(format!(",\"__delta_seq\":{seq}").as_bytes());
    if let Some(k) = conflation_key {
        out.extend_from_slice(b",\"__conflation_key\":");
        push_json_str(&mut out, k);
    }
    out.push(b'}');
    out
}

/// What a `sockudo:delta` frame says besides the delta itself.
pub struct DeltaOf<'a> {
    pub channel: &'a str,
    pub event: &'a str,
    pub seq: u64,
    /// The sequence number of the frame the delta applies to.
    pub base_index: u64,
    pub algorithm: Algorithm,
    pub conflation_key: Option<&'a str>,
    /// The message's stream position, so that a client's recovery position advances.
    pub stream: Option<(&'a str, u64)>,
}

/// `{"event":"sockudo:delta","channel":…,"data":{"event","delta","seq","algorithm",
/// "conflation_key"?,"base_index"},"stream_id"?,"serial"?}`.
pub fn delta_frame(d: &DeltaOf<'_>, delta_b64: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(delta_b64.len() + 160);
    out.extend_from_slice(b"{\"event\":\"sockudo:delta\",\"channel\":");
    push_json_str(&mut out, d.channel);
    out.extend_from_slice(b",\"data\":{\"event\":");
    push_json_str(&mut out, d.event);
    out.extend_from_slice(b",\"delta\":\"");
    out.extend_from_slice(delta_b64.as_bytes());
    out.extend_from_slice(format!("\",\"seq\":{},\"algorithm\":\"{}\"", d.seq, d.algorithm.name()).as_bytes());
    if let Some(k) = d.conflation_key {
        out.extend_from_slice(b",\"conflation_key\":");
        push_json_str(&mut out, k);
    }
    out.extend_from_slice(format!(",\"base_index\":{}}}", d.base_index).as_bytes());
    if let Some((stream_id, serial)) = d.stream {
        out.extend_from_slice(b",\"stream_id\":");
        push_json_str(&mut out, stream_id);
        out.extend_from_slice(format!(",\"serial\":{serial}").as_bytes());
    }
    out.push(b'}');
    out
}

/// `delta_compression_enabled`, for the connection or (`channel`) one subscription.
pub fn enabled_frame(d: Dialect, enabled: bool, algorithm: Algorithm, channel: Option<&str>) -> Vec<u8> {
    let prefix = if d == Dialect::V2 { "sockudo" } else { "pusher" };
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(format!("{{\"event\":\"{prefix}:delta_compression_enabled\"").as_bytes());
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_json_str(&mut out, c);
    }
    out.extend_from_slice(
        format!(",\"data\":{{\"enabled\":{enabled},\"algorithm\":\"{}\"", algorithm.name()).as_bytes(),
    );
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_json_str(&mut out, c);
    }
    out.extend_from_slice(b"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_and_choices() {
        assert_eq!(Algorithm::parse("Fossil"), Some(Algorithm::Fossil));
        assert_eq!(Algorithm::parse("VCDIFF"), Some(Algorithm::Xdelta3));
        assert_eq!(Algorithm::parse("zstd"), None);
        let c = |j: &str| Choice::parse(&sonic_rs::from_str(j).unwrap());
        assert_eq!(c("true"), Ok(Choice::On(None)));
        assert_eq!(c("false"), Ok(Choice::Off));
        assert_eq!(c(r#""none""#), Ok(Choice::Off));
        assert_eq!(c(r#""XDelta3""#), Ok(Choice::On(Some(Algorithm::Xdelta3))));
        assert_eq!(c(r#"{"enabled":true,"algorithm":"fossil"}"#), Ok(Choice::On(Some(Algorithm::Fossil))));
        assert_eq!(c(r#"{"enabled":false}"#), Ok(Choice::Off));
        assert!(c(r#""brotli""#).unwrap_err().contains("unknown algorithm"));
        assert!(c("3").is_err());
    }

    #[test]
    fn frames() {
        let f = br#"{"event":"e","channel":"c","data":"x"}"#;
        assert_eq!(
            with_seq(f, 3, Some("BTC")),
            br#"{"event":"e","channel":"c","data":"x","__delta_seq":3,"__conflation_key":"BTC"}"#
        );
        let d = DeltaOf {
            channel: "c",
            event: "e",
            seq: 4,
            base_index: 3,
            algorithm: Algorithm::Fossil,
            conflation_key: None,
            stream: Some(("s", 9)),
        };
        assert_eq!(
            String::from_utf8(delta_frame(&d, "QUJD")).unwrap(),
            r#"{"event":"sockudo:delta","channel":"c","data":{"event":"e","delta":"QUJD","seq":4,"algorithm":"fossil","base_index":3},"stream_id":"s","serial":9}"#
        );
        assert_eq!(
            String::from_utf8(enabled_frame(Dialect::V2, true, Algorithm::Xdelta3, Some("c"))).unwrap(),
            r#"{"event":"sockudo:delta_compression_enabled","channel":"c","data":{"enabled":true,"algorithm":"xdelta3","channel":"c"}}"#
        );
    }

    #[test]
    fn both_algorithms_encode_and_fossil_applies() {
        let base = br#"{"event":"tick","channel":"p","data":"{\"symbol\":\"BTC\",\"price\":67210.5,\"volume\":1200}"}"#;
        let target =
            br#"{"event":"tick","channel":"p","data":"{\"symbol\":\"BTC\",\"price\":67211.0,\"volume\":1201}"}"#;
        let engine = base64::engine::general_purpose::STANDARD;
        let fossil = engine.decode(Algorithm::Fossil.encode(base, target).unwrap()).unwrap();
        assert!(fossil.len() < target.len());
        // The crate's own decoder as a smoke check; the e2e suite decodes with the npm packages.
        assert_eq!(fossil_delta::apply(base, &fossil).unwrap(), target);
        let vcdiff = engine.decode(Algorithm::Xdelta3.encode(base, target).unwrap()).unwrap();
        assert_eq!(&vcdiff[..3], &[0xD6, 0xC3, 0xC4], "VCDIFF magic");
    }
}
