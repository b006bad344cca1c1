//! A mutation of a mutable message as the HTTP API receives it
//! (`docs/protocol/v2.md#mutation-endpoints`): its shape checked here, before the owner checks
//! it against the message, and the digest that tells an `op_id` retry from another operation.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait};
use storage::VersionAction;

/// Fields a mutation may clear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Clear {
    pub name: bool,
    pub data: bool,
    pub extras: bool,
}

/// A mutation as the HTTP API received it (`docs/protocol/v2.md#mutation-endpoints`), checked
/// for shape; the owner checks it against the message. With several nodes the cluster log
/// carries it as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    pub action: VersionAction,
    pub name: Option<String>,
    /// New data (update, delete) or the fragment (append). As with publishes, data is a string:
    /// any other JSON value is sent as its JSON text.
    pub data: Option<String>,
    /// A JSON object's text.
    pub extras: Option<String>,
    pub clear: Clear,
    pub description: Option<String>,
    /// A JSON object's text.
    pub metadata: Option<String>,
    pub op_id: Option<String>,
    pub client_id: Option<String>,
    pub socket_id: Option<String>,
}

const MAX_OP_ID: usize = 64;
const MAX_CLIENT_ID: usize = 128;

impl Mutation {
    pub fn parse(action: VersionAction, body: &sonic_rs::Value) -> Result<Mutation, String> {
        if !body.is_object() {
            return Err("the body must be a JSON object".into());
        }
        let text = |key: &str| -> Result<Option<String>, String> {
            match body.get(key) {
                None => Ok(None),
                Some(v) if v.is_null() => Ok(None),
                Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| format!("{key} must be a string")),
            }
        };
        let object = |key: &str| -> Result<Option<String>, String> {
            match body.get(key) {
                None => Ok(None),
                Some(v) if v.is_null() => Ok(None),
                Some(v) if v.is_object() => Ok(Some(v.to_string())),
                Some(_) => Err(format!("{key} must be a JSON object")),
            }
        };
        let data = match body.get("data") {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) if v.get_type() == JsonType::String => Some(v.as_str().unwrap_or_default().to_owned()),
            Some(_) if action == VersionAction::Append => return Err("append data must be a string".into()),
            Some(v) => Some(v.to_string()),
        };
        let mut clear = Clear::default();
        match body.get("clear_fields") {
            None => {}
            Some(v) if v.is_null() => {}
            Some(_) if action == VersionAction::Append => return Err("an append cannot clear fields".into()),
            Some(v) => {
                let list = v.as_array().ok_or("clear_fields must be an array")?;
                for f in list.iter() {
                    let slot = match f.as_str() {
                        Some("name") => &mut clear.name,
                        Some("data") => &mut clear.data,
                        Some("extras") => &mut clear.extras,
                        _ => return Err(format!("clear_fields may hold \"name\", \"data\" and \"extras\", not {f}")),
                    };
                    if *slot {
                        return Err(format!("clear_fields lists {f} twice"));
                    }
                    *slot = true;
                }
            }
        }
        let m = Mutation {
            action,
            name: text("name")?,
            data,
            extras: object("extras")?,
            clear,
            description: text("description")?,
            metadata: object("metadata")?,
            op_id: text("op_id")?,
            client_id: text("client_id")?,
            socket_id: text("socket_id")?,
        };
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        for (cleared, given, field) in [
            (self.clear.name, self.name.is_some(), "name"),
            (self.clear.data, self.data.is_some(), "data"),
            (self.clear.extras, self.extras.is_some(), "extras"),
        ] {
            if cleared && given {
                return Err(format!("{field} is both given and in clear_fields"));
            }
        }
        match self.action {
            VersionAction::Update
                if self.name.is_none()
                    && self.data.is_none()
                    && self.extras.is_none()
                    && self.clear == Clear::default() =>
            {
                return Err("an update needs name, data, extras or clear_fields".into())
            }
            VersionAction::Append if self.name.is_some() => return Err("an append cannot change the name".into()),
            VersionAction::Append if self.data.is_none() => return Err("append data is required".into()),
            // An AI stream may end with an empty terminal append (`docs/protocol/v2.md#ai-transport`).
            VersionAction::Append
                if self.data.as_deref() == Some("")
                    && !super::ai::is_terminal(super::ai::status(self.extras.as_deref()).as_deref()) =>
            {
                return Err("append data must not be empty (except in a terminal AI append)".into())
            }
            VersionAction::Delete if self.name.is_some() => return Err("a delete cannot change the name".into()),
            _ => {}
        }
        if self.op_id.as_deref().is_some_and(|o| o.is_empty() || o.len() > MAX_OP_ID) {
            return Err(format!("op_id must be 1 to {MAX_OP_ID} bytes"));
        }
        if self.client_id.as_deref().is_some_and(|c| c.is_empty() || c.len() > MAX_CLIENT_ID) {
            return Err(format!("client_id must be 1 to {MAX_CLIENT_ID} bytes"));
        }
        Ok(())
    }

    /// A digest of everything the mutation does, so that an `op_id` retry can be told from a
    /// different operation under the same `op_id` (`docs/protocol/v2.md#op_id-idempotency`).
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([self.action as u8, self.clear.name as u8, self.clear.data as u8, self.clear.extras as u8]);
        for field in [&self.name, &self.data, &self.extras, &self.description, &self.metadata, &self.client_id] {
            match field {
                Some(s) => {
                    h.update([1]);
                    h.update((s.len() as u64).to_be_bytes());
                    h.update(s.as_bytes());
                }
                None => h.update([0]),
            }
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(action: VersionAction, json: &str) -> Result<Mutation, String> {
        Mutation::parse(action, &sonic_rs::from_str(json).unwrap())
    }

    #[test]
    fn mutation_rules() {
        use VersionAction::*;
        let m = parse(Update, r#"{"data":{"a":1},"clear_fields":["extras"],"op_id":"o1"}"#).unwrap();
        assert_eq!(m.data.as_deref(), Some(r#"{"a":1}"#));
        assert!(m.clear.extras);
        assert!(parse(Update, "{}").unwrap_err().contains("needs"));
        assert!(parse(Update, r#"{"data":"x","clear_fields":["data"]}"#).unwrap_err().contains("both"));
        assert!(parse(Update, r#"{"clear_fields":["data","data"]}"#).unwrap_err().contains("twice"));
        assert!(parse(Update, r#"{"clear_fields":["tags"]}"#).is_err());
        assert!(parse(Append, r#"{"data":1}"#).unwrap_err().contains("string"));
        assert!(parse(Append, r#"{"data":""}"#).is_err());
        assert!(parse(Append, r#"{}"#).is_err());
        assert!(parse(Append, r#"{"data":"x","op_id":""}"#).is_err());
        assert!(parse(Append, &format!(r#"{{"data":"x","op_id":"{}"}}"#, "o".repeat(65))).is_err());
        assert!(parse(Delete, "{}").is_ok());
        assert!(parse(Update, r#"{"extras":[1]}"#).is_err());
        let a = parse(Append, r#"{"data":"x","op_id":"1"}"#).unwrap();
        let b = parse(Append, r#"{"data":"y","op_id":"1"}"#).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), parse(Append, r#"{"op_id":"1","data":"x"}"#).unwrap().digest());
    }
}
