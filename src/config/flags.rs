//! Command-line flags: the highest-precedence layer of configuration.

use super::value::{parse_value, ConfigError};
use std::path::PathBuf;

/// The options given on the command line.
#[derive(Default, Debug)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub shards: Option<usize>,
    pub data_dir: Option<PathBuf>,
    /// Test-only hooks (see `Config::test_hooks`).
    pub test_hooks: bool,
}

pub const USAGE: &str = "usage: sockudo [--config FILE.toml] [--host ADDR] [--port N] [--metrics-port N] [--shards N] [--data-dir DIR] [--test-hooks]";

impl Flags {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags, ConfigError> {
        let mut f = Flags::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (a.clone(), None),
            };
            let mut value =
                |key: &str| inline.clone().or_else(|| it.next()).ok_or_else(|| ConfigError::new(key, "needs a value"));
            match name.as_str() {
                "--config" | "-c" => f.config = Some(PathBuf::from(value("--config")?)),
                "--host" => f.host = Some(value("--host")?),
                "--port" => f.port = Some(parse_value("--port", &value("--port")?)?),
                "--metrics-port" => f.metrics_port = Some(parse_value("--metrics-port", &value("--metrics-port")?)?),
                "--shards" => f.shards = Some(parse_value("--shards", &value("--shards")?)?),
                "--data-dir" => f.data_dir = Some(PathBuf::from(value("--data-dir")?)),
                "--test-hooks" => f.test_hooks = true,
                "--help" | "-h" => return Err(ConfigError::new("--help", USAGE)),
                other => return Err(ConfigError::new(other, format!("unknown option; {USAGE}"))),
            }
        }
        Ok(f)
    }
}
