//! The building blocks of configuration: the one error type, and how a value is read from
//! the environment or a file (numbers may be given as strings, as the reference accepts).

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A start-up failure: which setting, and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { key: key.into(), problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: `{}`: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Accepts a number, a numeric string (`"100"`) or `null` (`docs/protocol/pusher.md#app-fields`).
pub fn num_or_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + TryFrom<i64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        S(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::I(i)) => T::try_from(i).map(Some).map_err(|_| serde::de::Error::custom(format!("{i} is out of range"))),
        Some(N::S(s)) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("\"{s}\" is not a valid number"))),
    }
}

pub(crate) fn parse_value<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::new(key, format!("\"{v}\" is not a valid value")))
}

/// Reads `name` from the environment, parsed; absent is `None`, unparseable is an error.
pub fn env<T: std::str::FromStr>(name: &str) -> Result<Option<T>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_value(name, &v).map(Some),
        _ => Ok(None),
    }
}

pub fn env_bool(name: &str) -> Result<Option<bool>, ConfigError> {
    match std::env::var(name) {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::new(name, format!("\"{v}\" is not a boolean"))),
        },
        Err(_) => Ok(None),
    }
}

/// A setting that must not be 0 when given.
pub(crate) fn positive<T: PartialEq + Default>(key: &str, v: Option<T>) -> Result<Option<T>, ConfigError> {
    match v {
        Some(n) if n == T::default() => Err(ConfigError::new(key, "must be greater than 0")),
        v => Ok(v),
    }
}
