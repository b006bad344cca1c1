//! Log lines: plain text for a terminal, or one JSON object or one logfmt line per record for
//! a log pipeline (`log_format`, env `LOG_FORMAT`). Levels come from `RUST_LOG` (default
//! `info`). Records carry their fields as key-values (`log::debug!(socket_id = ..; "..")`),
//! which the structured formats emit as fields of their own.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text = 0,
    Json = 1,
    Logfmt = 2,
}

impl Format {
    pub fn parse(v: &str) -> Option<Format> {
        match v.trim().to_ascii_lowercase().as_str() {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "logfmt" => Some(Format::Logfmt),
            _ => None,
        }
    }
}

/// The format in use. The logger starts before the configuration is read (so that problems
/// reading it are logged) and switches once it is known.
static FORMAT: AtomicU8 = AtomicU8::new(Format::Text as u8);

pub fn set_format(f: Format) {
    FORMAT.store(f as u8, Ordering::Relaxed);
}

pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let ts = buf.timestamp_millis().to_string();
            let mut fields = Fields(Vec::new());
            let _ = record.key_values().visit(&mut fields);
            let msg = record.args().to_string();
            match FORMAT.load(Ordering::Relaxed) {
                1 => {
                    let mut line = format!(
                        "{{\"ts\":{},\"level\":\"{}\",\"target\":{},\"msg\":{}",
                        json_str(&ts),
                        record.level(),
                        json_str(record.target()),
                        json_str(&msg)
                    );
                    for (k, v) in &fields.0 {
                        line.push_str(&format!(",{}:{}", json_str(k), json_str(v)));
                    }
                    writeln!(buf, "{line}}}")
                }
                2 => {
                    let mut line = format!(
                        "ts={ts} level={} target={} msg={}",
                        record.level().as_str().to_lowercase(),
                        record.target(),
                        logfmt_value(&msg)
                    );
                    for (k, v) in &fields.0 {
                        line.push_str(&format!(" {k}={}", logfmt_value(v)));
                    }
                    writeln!(buf, "{line}")
                }
                _ => {
                    let mut line = format!("[{ts} {} {}] {msg}", record.level(), record.target());
                    for (k, v) in &fields.0 {
                        line.push_str(&format!(" {k}={v}"));
                    }
                    writeln!(buf, "{line}")
                }
            }
        })
        .init();
}

struct Fields(Vec<(String, String)>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push((key.to_string(), value.to_string()));
        Ok(())
    }
}

fn json_str(s: &str) -> String {
    sonic_rs::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A logfmt value, quoted when it holds spaces, quotes or `=`.
fn logfmt_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '"', '=', '\n']) {
        return v.to_owned();
    }
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_formats() {
        assert_eq!(logfmt_value("plain"), "plain");
        assert_eq!(logfmt_value("two words"), "\"two words\"");
        assert_eq!(logfmt_value("a\"b"), "\"a\\\"b\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(json_str("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(Format::parse("JSON"), Some(Format::Json));
        assert_eq!(Format::parse("xml"), None);
    }
}
