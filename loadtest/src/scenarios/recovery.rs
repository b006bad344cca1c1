//! `recovery-storm`: many V2 sockets drop at once and resume (connection recovery). The server
//! does not implement V2 resume yet, so this parses its options and exits with an error rather
//! than pretending to measure anything.

use super::Outcome;
use crate::cli::{Args, Common};
use crate::pusher::Protocol;

pub fn run(args: &Args, common: &Common) -> Outcome {
    let sockets: usize = args.num("sockets", 1000, 50)?;
    let channels: usize = args.num("channels", 10, 5)?;
    let fraction: f64 = args.num("disconnect-fraction", 0.5, 0.5)?;
    let _duration: f64 = args.num("duration", 10.0, 3.0)?;
    args.finish()?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err("--disconnect-fraction: 0..=1".into());
    }
    if sockets == 0 || channels == 0 {
        return Err("--sockets and --channels must be at least 1".into());
    }
    if common.proto != Protocol::V2 {
        return Err(
            "recovery-storm requires --protocol 2 (V2 connection recovery / resume)".into(),
        );
    }
    Err(
        "recovery-storm: V2 resume is not supported by this server yet; no measurement was made"
            .into(),
    )
}
