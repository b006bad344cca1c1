//! Device registrations and channel subscriptions as the push HTTP API takes and shows them
//! (`docs/push.md#registry`): camelCase bodies, with the snake_case spellings SDKs and docs
//! use accepted too. A device is stored whole (its provider token and the hash of its identity
//! token included) and shown without its secrets: the recipient appears as its transport,
//! provider and a hash of its token.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sonic_rs::{JsonValueMutTrait, JsonValueTrait, Value};

const MAX_ID_BYTES: usize = 256;
const FORM_FACTORS: [&str; 8] = ["phone", "tablet", "desktop", "tv", "car", "watch", "embedded", "other"];
const PLATFORMS: [&str; 8] = ["android", "ios", "browser", "windows", "macos", "watchos", "tvos", "other"];
const STATES: [&str; 3] = ["ACTIVE", "FAILING", "FAILED"];

/// Where a provider delivers to one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transportType", rename_all = "camelCase")]
pub enum Recipient {
    /// Firebase Cloud Messaging (`gcm` in the Ably-shaped body).
    #[serde(rename = "gcm")]
    Fcm {
        #[serde(rename = "registrationToken")]
        registration_token: String,
    },
    #[serde(rename = "apns")]
    Apns {
        #[serde(rename = "deviceToken")]
        device_token: String,
    },
    /// A browser's Web Push subscription: its endpoint and keys (base64url).
    #[serde(rename = "web")]
    Web { endpoint: String, p256dh: String, auth: String },
    #[serde(rename = "hms")]
    Hms {
        #[serde(rename = "registrationToken")]
        registration_token: String,
    },
    #[serde(rename = "wns")]
    Wns {
        #[serde(rename = "channelUri")]
        channel_uri: String,
    },
}

impl Recipient {
    fn parse(v: &Value) -> Result<Recipient, String> {
        if !v.is_object() {
            return Err("push.recipient must be a JSON object".into());
        }
        let text = |names: &[&str]| -> Result<String, String> {
            match field(v, names).and_then(|x| x.as_str()) {
                Some(s) if !s.is_empty() && s.len() <= 4096 => Ok(s.to_owned()),
                _ => Err(format!("push.recipient.{} must be a non-empty string", names[0])),
            }
        };
        let transport = field(v, &["transportType", "transport_type"]).and_then(|t| t.as_str());
        match transport {
            Some("gcm" | "fcm") => {
                Ok(Recipient::Fcm { registration_token: text(&["registrationToken", "registration_token"])? })
            }
            Some("apns") => Ok(Recipient::Apns { device_token: text(&["deviceToken", "device_token"])? }),
            Some("web") => Ok(Recipient::Web {
                endpoint: text(&["endpoint"])?,
                p256dh: text(&["p256dh"])?,
                auth: text(&["auth"])?,
            }),
            Some("hms") => {
                Ok(Recipient::Hms { registration_token: text(&["registrationToken", "registration_token"])? })
            }
            Some("wns") => Ok(Recipient::Wns { channel_uri: text(&["channelUri", "channel_uri"])? }),
            Some(other) => {
                Err(format!("push.recipient.transportType {other:?} is not one of gcm, apns, web, hms, wns"))
            }
            None => Err("push.recipient.transportType is required".into()),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Recipient::Fcm { .. } => "gcm",
            Recipient::Apns { .. } => "apns",
            Recipient::Web { .. } => "web",
            Recipient::Hms { .. } => "hms",
            Recipient::Wns { .. } => "wns",
        }
    }

    /// The provider that delivers to it, as subscriptions and provider credentials name it.
    pub fn provider(&self) -> &'static str {
        match self {
            Recipient::Fcm { .. } => "fcm",
            Recipient::Apns { .. } => "apns",
            Recipient::Web { .. } => "webPush",
            Recipient::Hms { .. } => "hms",
            Recipient::Wns { .. } => "wns",
        }
    }

    /// A hash of the provider's token for the device (its endpoint for Web Push), shown in
    /// place of the token.
    pub fn token_hash(&self) -> String {
        let token = match self {
            Recipient::Fcm { registration_token: t } | Recipient::Hms { registration_token: t } => t,
            Recipient::Apns { device_token } => device_token,
            Recipient::Web { endpoint, .. } => endpoint,
            Recipient::Wns { channel_uri } => channel_uri,
        };
        hex::encode(Sha256::digest(token.as_bytes()))
    }
}

/// A device registration as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub form_factor: String,
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub recipient: Recipient,
    pub push_state: String,
    pub push_failure_count: u32,
    pub last_active_at_ms: u64,
    /// SHA-256 (hex) of the device identity token the device proves itself with.
    pub identity_token_hash: String,
}

/// What a registration request asks for, checked for shape.
pub struct Registration {
    pub id: String,
    pub client_id: Option<String>,
    pub form_factor: String,
    pub platform: String,
    pub metadata: Option<Value>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub recipient: Recipient,
    pub state: Option<String>,
}

/// The first of `names` the object has (not null).
fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(n).filter(|x| !x.is_null()))
}

/// An optional string field (any of its spellings).
fn opt_text(v: &Value, names: &[&str]) -> Result<Option<String>, String> {
    match field(v, names) {
        None => Ok(None),
        Some(x) => match x.as_str() {
            Some(s) if s.len() <= MAX_ID_BYTES => Ok(Some(s.to_owned())),
            _ => Err(format!("{} must be a string of at most {MAX_ID_BYTES} bytes", names[0])),
        },
    }
}

/// A required id (any of its spellings): a non-empty string.
pub fn id_field(v: &Value, names: &[&str]) -> Result<String, String> {
    match opt_text(v, names)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("{} is required", names[0])),
    }
}

fn one_of(v: &Value, names: &[&str], allowed: &[&str]) -> Result<String, String> {
    let s = opt_text(v, names)?.ok_or_else(|| format!("{} is required", names[0]))?;
    match allowed.contains(&s.as_str()) {
        true => Ok(s),
        false => Err(format!("{} {s:?} is not one of {}", names[0], allowed.join(", "))),
    }
}

impl Registration {
    pub fn parse(body: &Value) -> Result<Registration, String> {
        if !body.is_object() {
            return Err("the body must be a JSON object".into());
        }
        let push = field(body, &["push"]).ok_or("push is required (with push.recipient)")?;
        let recipient = Recipient::parse(field(push, &["recipient"]).ok_or("push.recipient is required")?)?;
        let state = match opt_text(push, &["state"])? {
            Some(s) if STATES.contains(&s.as_str()) => Some(s),
            Some(s) => return Err(format!("push.state {s:?} is not one of {}", STATES.join(", "))),
            None => None,
        };
        let metadata = match field(body, &["metadata"]) {
            Some(m) if m.is_object() => Some(m.clone()),
            Some(_) => return Err("metadata must be a JSON object".into()),
            None => None,
        };
        Ok(Registration {
            id: id_field(body, &["id", "deviceId", "device_id"])?,
            client_id: opt_text(body, &["clientId", "client_id"])?.filter(|c| !c.is_empty()),
            form_factor: one_of(body, &["formFactor", "form_factor"], &FORM_FACTORS)?,
            platform: one_of(body, &["platform"], &PLATFORMS)?,
            metadata,
            timezone: opt_text(body, &["timezone"])?,
            locale: opt_text(body, &["locale"])?,
            recipient,
            state,
        })
    }
}

impl Device {
    /// The device as the API shows it: no provider token, no identity token hash.
    pub fn shown(&self, app_id: &str) -> Value {
        let mut v = sonic_rs::json!({
            "appId": app_id,
            "id": self.id,
            "clientId": self.client_id,
            "formFactor": self.form_factor,
            "platform": self.platform,
            "timezone": self.timezone,
            "locale": self.locale,
            "lastActiveAtMs": self.last_active_at_ms,
            "pushState": self.push_state,
            "pushFailureCount": self.push_failure_count,
            "recipient": {
                "transportType": self.recipient.transport(),
                "provider": self.recipient.provider(),
                "tokenHash": self.recipient.token_hash(),
            },
        });
        if let (Some(m), Some(obj)) = (&self.metadata, v.as_object_mut()) {
            obj.insert(&"metadata", m.clone());
        }
        v
    }
}

/// A device identity token: what the device shows (`x-sockudo-device-identity-token`) to act
/// on its own registration, and the hash the registry keeps of it.
pub fn new_identity_token() -> (String, String) {
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let hash = identity_token_hash(&token);
    (token, hash)
}

pub fn identity_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A channel subscription as stored and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub channel: String,
    pub device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub provider: String,
    pub token_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_version: Option<String>,
}

/// What a subscription request asks for: the channel and device, and the optional
/// `credentialVersion`.
pub struct SubscriptionRequest {
    pub channel: String,
    pub device_id: String,
    pub credential_version: Option<String>,
}

impl SubscriptionRequest {
    pub fn parse(body: &Value) -> Result<SubscriptionRequest, String> {
        if !body.is_object() {
            return Err("the body must be a JSON object".into());
        }
        Ok(SubscriptionRequest {
            channel: id_field(body, &["channel"])?,
            device_id: id_field(body, &["deviceId", "device_id"])?,
            credential_version: opt_text(body, &["credentialVersion", "credential_version"])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Registration, String> {
        Registration::parse(&sonic_rs::from_str(json).unwrap())
    }

    #[test]
    fn registrations_take_both_spellings_and_name_what_is_wrong() {
        let r = parse(
            r#"{"id":"d1","client_id":"u1","form_factor":"phone","platform":"ios",
                "push":{"recipient":{"transportType":"apns","deviceToken":"abc"}}}"#,
        )
        .unwrap();
        assert_eq!((r.id.as_str(), r.client_id.as_deref()), ("d1", Some("u1")));
        assert_eq!(r.recipient, Recipient::Apns { device_token: "abc".into() });
        assert_eq!(r.recipient.provider(), "apns");
        assert_eq!(r.recipient.token_hash().len(), 64);
        let web = r#"{"id":"w","formFactor":"desktop","platform":"browser","push":{"recipient":
            {"transportType":"web","endpoint":"https://push.example/1","p256dh":"k","auth":"a"}}}"#;
        assert_eq!(parse(web).unwrap().recipient.provider(), "webPush");
        for (body, says) in [
            (r#"[]"#, "JSON object"),
            (
                r#"{"formFactor":"phone","platform":"ios","push":{"recipient":{"transportType":"apns","deviceToken":"a"}}}"#,
                "id is required",
            ),
            (
                r#"{"id":"d","formFactor":"fridge","platform":"ios","push":{"recipient":{"transportType":"apns","deviceToken":"a"}}}"#,
                "formFactor \"fridge\"",
            ),
            (r#"{"id":"d","formFactor":"phone","platform":"ios"}"#, "push is required"),
            (
                r#"{"id":"d","formFactor":"phone","platform":"ios","push":{"recipient":{"transportType":"apns"}}}"#,
                "deviceToken",
            ),
            (
                r#"{"id":"d","formFactor":"phone","platform":"ios","push":{"recipient":{"transportType":"pigeon"}}}"#,
                "pigeon",
            ),
            (
                r#"{"id":"d","formFactor":"phone","platform":"ios","push":{"state":"BAD","recipient":{"transportType":"apns","deviceToken":"a"}}}"#,
                "push.state",
            ),
        ] {
            let e = parse(body).err().unwrap_or_else(|| panic!("{body} was taken"));
            assert!(e.contains(says), "{body}: {e}");
        }
    }

    #[test]
    fn a_shown_device_keeps_its_secrets() {
        let (token, hash) = new_identity_token();
        assert_eq!(identity_token_hash(&token), hash);
        let d = Device {
            id: "d1".into(),
            client_id: None,
            form_factor: "phone".into(),
            platform: "android".into(),
            metadata: None,
            timezone: None,
            locale: None,
            recipient: Recipient::Fcm { registration_token: "secret-token".into() },
            push_state: "ACTIVE".into(),
            push_failure_count: 0,
            last_active_at_ms: 1,
            identity_token_hash: hash.clone(),
        };
        let shown = d.shown("app").to_string();
        assert!(!shown.contains("secret-token") && !shown.contains(&hash), "{shown}");
        assert!(shown.contains(r#""provider":"fcm""#), "{shown}");
        let stored = sonic_rs::to_string(&d).unwrap();
        assert_eq!(sonic_rs::from_str::<Device>(&stored).unwrap(), d);
    }
}
