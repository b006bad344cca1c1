//! Message tags (the top-level `tags` of an HTTP publish) and the tag filter grammar they are
//! matched with (`docs/protocol/v2.md#tag-filters`).

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

/// At most this many tags on one message, each key and value within the filter limits.
pub const MAX_TAGS: usize = 128;
const MAX_NODES: usize = 128;
const MAX_DEPTH: usize = 16;
const MAX_KEY_BYTES: usize = 256;
const MAX_VALUE_BYTES: usize = 1024;
const MAX_VALS: usize = 128;

/// A message's tags, sorted by key (looked up by binary search while filtering).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tags(Box<[(Box<str>, Box<str>)]>);

impl Tags {
    /// The `tags` of a publish: an object whose values are strings (numbers and booleans are
    /// taken as their text). `None` for an empty object or `null`.
    pub fn parse(v: &Value) -> Result<Option<Tags>, String> {
        if v.is_null() {
            return Ok(None);
        }
        let obj = v.as_object().ok_or("tags must be a JSON object of strings")?;
        if obj.len() > MAX_TAGS {
            return Err(format!("tags: at most {MAX_TAGS} tags per message"));
        }
        let mut pairs = Vec::with_capacity(obj.len());
        for (k, v) in obj.iter() {
            if k.is_empty() || k.len() > MAX_KEY_BYTES {
                return Err(format!("tags: a key must be 1 to {MAX_KEY_BYTES} bytes"));
            }
            let v = scalar_text(v).ok_or_else(|| format!("tags: the value of {k:?} must be a string"))?;
            if v.len() > MAX_VALUE_BYTES {
                return Err(format!("tags: the value of {k:?} is longer than {MAX_VALUE_BYTES} bytes"));
            }
            pairs.push((Box::from(k), v.into_boxed_str()));
        }
        Ok(Tags::from_pairs(pairs))
    }

    fn from_pairs(mut pairs: Vec<(Box<str>, Box<str>)>) -> Option<Tags> {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        (!pairs.is_empty()).then(|| Tags(pairs.into_boxed_slice()))
    }

    /// Tags as stored with a history row (`to_json`).
    pub fn from_json(text: &str) -> Option<Tags> {
        let v: Value = sonic_rs::from_str(text).ok()?;
        Tags::parse(&v).ok().flatten()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &*self.0[i].1)
    }

    /// The JSON object, keys in order.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        out.push(b'{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::protocol::outbound::push_json_str(&mut out, k);
            out.push(b':');
            crate::protocol::outbound::push_json_str(&mut out, v);
        }
        out.push(b'}');
        String::from_utf8(out).expect("JSON of UTF-8 strings")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

/// A string, or a number's or boolean's text.
fn scalar_text(v: &Value) -> Option<String> {
    if let Some(s) = v.as_str() {
        return Some(s.to_owned());
    }
    (v.is_number() || v.is_boolean()).then(|| v.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Neq,
    In,
    Nin,
    Ex,
    Nex,
    Sw,
    Ew,
    Ct,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Cmp {
    fn parse(s: &str) -> Option<Cmp> {
        Some(match s {
            "eq" => Cmp::Eq,
            "neq" => Cmp::Neq,
            "in" => Cmp::In,
            "nin" => Cmp::Nin,
            "ex" => Cmp::Ex,
            "nex" => Cmp::Nex,
            "sw" => Cmp::Sw,
            "ew" => Cmp::Ew,
            "ct" => Cmp::Ct,
            "gt" => Cmp::Gt,
            "gte" => Cmp::Gte,
            "lt" => Cmp::Lt,
            "lte" => Cmp::Lte,
            _ => return None,
        })
    }
}

/// A tag filter: a comparison of one tag, or `and`/`or`/`not` of others.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Leaf { key: Box<str>, cmp: Cmp, vals: Box<[Box<str>]> },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

impl Node {
    /// Parses and checks a node and its children against the limits.
    pub fn parse(v: &Value) -> Result<Node, String> {
        let mut nodes = 0;
        Node::parse_at(v, 1, &mut nodes)
    }

    fn parse_at(v: &Value, depth: usize, nodes: &mut usize) -> Result<Node, String> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(format!("more than {MAX_NODES} nodes"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        if !v.is_object() {
            return Err("a node must be an object".into());
        }
        if let Some(op) = v.get("op").filter(|o| !o.is_null()) {
            let op = op.as_str().ok_or("op must be a string")?;
            let children =
                v.get("nodes").and_then(|n| n.as_array()).ok_or_else(|| format!("{op:?} needs a nodes array"))?;
            let mut parsed = Vec::with_capacity(children.len());
            for c in children.iter() {
                parsed.push(Node::parse_at(c, depth + 1, nodes)?);
            }
            return match op {
                "and" | "or" if parsed.is_empty() => Err(format!("{op:?} needs at least one node")),
                "and" => Ok(Node::And(parsed)),
                "or" => Ok(Node::Or(parsed)),
                "not" if parsed.len() != 1 => Err("\"not\" needs exactly one node".into()),
                "not" => Ok(Node::Not(Box::new(parsed.pop().expect("one node")))),
                _ => Err(format!("unknown op {op:?} (and, or, not)")),
            };
        }
        let key = v.get("key").and_then(|k| k.as_str()).unwrap_or_default();
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(format!("a leaf needs a key of 1 to {MAX_KEY_BYTES} bytes"));
        }
        let cmp_text = v.get("cmp").and_then(|c| c.as_str()).ok_or("a leaf needs cmp")?;
        let cmp = Cmp::parse(cmp_text).ok_or_else(|| {
            format!("unknown cmp {cmp_text:?} (eq, neq, in, nin, ex, nex, sw, ew, ct, gt, gte, lt, lte)")
        })?;
        let vals: Vec<Box<str>> = match cmp {
            Cmp::Ex | Cmp::Nex => Vec::new(),
            Cmp::In | Cmp::Nin => {
                let list = v.get("vals").and_then(|l| l.as_array()).filter(|l| !l.is_empty());
                let list = list.ok_or_else(|| format!("{cmp_text:?} needs a non-empty vals array"))?;
                if list.len() > MAX_VALS {
                    return Err(format!("more than {MAX_VALS} vals in one node"));
                }
                let mut out = Vec::with_capacity(list.len());
                for item in list.iter() {
                    out.push(leaf_value(item)?);
                }
                out
            }
            _ => {
                let val = v.get("val").ok_or_else(|| format!("{cmp_text:?} needs a val"))?;
                vec![leaf_value(val)?]
            }
        };
        Ok(Node::Leaf { key: key.into(), cmp, vals: vals.into_boxed_slice() })
    }

    /// Whether a message with `tags` passes (absent tags: `neq`, `nin` and `nex` pass).
    pub fn matches(&self, tags: Option<&Tags>) -> bool {
        match self {
            Node::And(n) => n.iter().all(|n| n.matches(tags)),
            Node::Or(n) => n.iter().any(|n| n.matches(tags)),
            Node::Not(n) => !n.matches(tags),
            Node::Leaf { key, cmp, vals } => {
                let got = tags.and_then(|t| t.get(key));
                let val = || &*vals[0];
                match (cmp, got) {
                    (Cmp::Ex, g) => g.is_some(),
                    (Cmp::Nex, g) => g.is_none(),
                    (Cmp::Neq, None) | (Cmp::Nin, None) => true,
                    (_, None) => false,
                    (Cmp::Eq, Some(g)) => g == val(),
                    (Cmp::Neq, Some(g)) => g != val(),
                    (Cmp::In, Some(g)) => vals.iter().any(|v| &**v == g),
                    (Cmp::Nin, Some(g)) => vals.iter().all(|v| &**v != g),
                    (Cmp::Sw, Some(g)) => g.starts_with(val()),
                    (Cmp::Ew, Some(g)) => g.ends_with(val()),
                    (Cmp::Ct, Some(g)) => g.contains(val()),
                    (Cmp::Gt | Cmp::Gte | Cmp::Lt | Cmp::Lte, Some(g)) => {
                        match (g.trim().parse::<f64>(), val().trim().parse::<f64>()) {
                            (Ok(a), Ok(b)) => match cmp {
                                Cmp::Gt => a > b,
                                Cmp::Gte => a >= b,
                                Cmp::Lt => a < b,
                                _ => a <= b,
                            },
                            _ => false,
                        }
                    }
                }
            }
        }
    }
}

/// A `val` or one of `vals`: a non-empty string (numbers and booleans as their text).
fn leaf_value(v: &Value) -> Result<Box<str>, String> {
    let s = scalar_text(v).ok_or("val and vals must be strings")?;
    if s.is_empty() {
        return Err("val must not be empty".into());
    }
    if s.len() > MAX_VALUE_BYTES {
        return Err(format!("a value is longer than {MAX_VALUE_BYTES} bytes"));
    }
    Ok(s.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: &str) -> Result<Node, String> {
        Node::parse(&sonic_rs::from_str(json).unwrap())
    }

    fn tags(json: &str) -> Option<Tags> {
        Tags::parse(&sonic_rs::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn every_comparison_and_the_absent_tag_rules() {
        let t = tags(r#"{"r":"eu-west","n":"15","tier":"gold"}"#);
        let t = t.as_ref();
        let m = |j: &str| node(j).unwrap().matches(t);
        let absent = |j: &str| node(j).unwrap().matches(None);
        assert!(m(r#"{"key":"r","cmp":"eq","val":"eu-west"}"#) && !absent(r#"{"key":"r","cmp":"eq","val":"x"}"#));
        assert!(!m(r#"{"key":"r","cmp":"neq","val":"eu-west"}"#) && absent(r#"{"key":"r","cmp":"neq","val":"x"}"#));
        assert!(m(r#"{"key":"tier","cmp":"in","vals":["vip","gold"]}"#));
        assert!(!absent(r#"{"key":"tier","cmp":"in","vals":["vip"]}"#));
        assert!(
            !m(r#"{"key":"tier","cmp":"nin","vals":["gold"]}"#) && absent(r#"{"key":"t","cmp":"nin","vals":["a"]}"#)
        );
        assert!(m(r#"{"key":"r","cmp":"ex"}"#) && !absent(r#"{"key":"r","cmp":"ex"}"#));
        assert!(!m(r#"{"key":"r","cmp":"nex"}"#) && absent(r#"{"key":"r","cmp":"nex"}"#));
        assert!(m(r#"{"key":"r","cmp":"sw","val":"eu"}"#) && m(r#"{"key":"r","cmp":"ew","val":"west"}"#));
        assert!(m(r#"{"key":"r","cmp":"ct","val":"-w"}"#) && !absent(r#"{"key":"r","cmp":"ct","val":"e"}"#));
        assert!(m(r#"{"key":"n","cmp":"gt","val":"9"}"#) && m(r#"{"key":"n","cmp":"gte","val":15}"#));
        assert!(!m(r#"{"key":"n","cmp":"lt","val":"15"}"#) && m(r#"{"key":"n","cmp":"lte","val":"15.0"}"#));
        // Not numbers on either side: no match, whatever the comparison.
        assert!(!m(r#"{"key":"r","cmp":"gt","val":"1"}"#) && !m(r#"{"key":"n","cmp":"lt","val":"x"}"#));
        assert!(!absent(r#"{"key":"n","cmp":"lte","val":"1"}"#));
        assert!(m(
            r#"{"op":"and","nodes":[{"key":"r","cmp":"sw","val":"eu"},{"op":"not","nodes":[{"key":"tier","cmp":"eq","val":"vip"}]}]}"#
        ));
        assert!(m(r#"{"op":"or","nodes":[{"key":"r","cmp":"eq","val":"us"},{"key":"n","cmp":"eq","val":"15"}]}"#));
    }

    #[test]
    fn invalid_nodes_say_what_is_wrong() {
        let err = |j: &str| node(j).unwrap_err();
        assert!(err(r#"{"op":"not","nodes":[]}"#).contains("exactly one"));
        assert!(err(r#"{"op":"and","nodes":[]}"#).contains("at least one"));
        assert!(err(r#"{"op":"xor","nodes":[{"key":"a","cmp":"ex"}]}"#).contains("unknown op"));
        assert!(err(r#"{"key":"","cmp":"eq","val":"x"}"#).contains("key"));
        assert!(err(r#"{"key":"a","cmp":"like","val":"x"}"#).contains("unknown cmp"));
        assert!(err(r#"{"key":"a","cmp":"in","vals":[]}"#).contains("non-empty vals"));
        assert!(err(r#"{"key":"a","cmp":"eq","val":""}"#).contains("empty"));
        assert!(err(r#"{"key":"a","cmp":"eq"}"#).contains("needs a val"));
        let deep =
            (0..17).fold(r#"{"key":"a","cmp":"ex"}"#.to_owned(), |n, _| format!(r#"{{"op":"not","nodes":[{n}]}}"#));
        assert!(err(&deep).contains("deeper"));
        let wide: Vec<String> = (0..128).map(|i| format!(r#"{{"key":"k{i}","cmp":"ex"}}"#)).collect();
        assert!(err(&format!(r#"{{"op":"or","nodes":[{}]}}"#, wide.join(","))).contains("nodes"));
        let vals: Vec<String> = (0..129).map(|i| format!("\"{i}\"")).collect();
        assert!(err(&format!(r#"{{"key":"a","cmp":"in","vals":[{}]}}"#, vals.join(","))).contains("vals"));
        assert!(err(&format!(r#"{{"key":"a","cmp":"eq","val":"{}"}}"#, "x".repeat(1025))).contains("longer"));
    }

    #[test]
    fn tags_are_strings_sorted_and_round_trip() {
        let t = tags(r#"{"b":"2","a":1,"c":true}"#).unwrap();
        assert_eq!(t.to_json(), r#"{"a":"1","b":"2","c":"true"}"#);
        assert_eq!(Tags::from_json(&t.to_json()), Some(t));
        assert!(tags("{}").is_none());
        assert!(Tags::parse(&sonic_rs::from_str(r#"{"a":{"x":1}}"#).unwrap()).is_err());
        assert!(Tags::parse(&sonic_rs::from_str(r#"["a"]"#).unwrap()).is_err());
    }
}
