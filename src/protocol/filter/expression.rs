//! The `expression` of a subscription filter: JMESPath over a projection of each message
//! (`docs/protocol/v2.md#filter-expressions`). Compiled once at subscribe, bounded in size,
//! nesting and node count; an evaluation error is no match.

use jmespath::ast::Ast;
use jmespath::{Rcvar, Variable};
use serde_json::{Map, Value};
use std::sync::Arc;

const MAX_SOURCE_BYTES: usize = 4096;
const MAX_NODES: usize = 256;
const MAX_DEPTH: usize = 32;
/// A message larger than this is not projected: expressions do not match it.
pub const MAX_PROJECTION_BYTES: usize = 64 * 1024;

pub struct Expression {
    source: Box<str>,
    compiled: jmespath::Expression<'static>,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

impl Expression {
    /// A JMESPath source, checked against the limits before and after parsing (the parser
    /// recurses on nesting, so deep nesting is refused before it runs).
    pub fn compile(source: &str) -> Result<Expression, String> {
        if source.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        if source.len() > MAX_SOURCE_BYTES {
            return Err(format!("the expression is longer than {MAX_SOURCE_BYTES} bytes"));
        }
        if nesting(source) > MAX_DEPTH {
            return Err(format!("the expression is nested deeper than {MAX_DEPTH} levels"));
        }
        let compiled = jmespath::compile(source).map_err(|e| format!("invalid JMESPath expression: {e}"))?;
        let mut nodes = 0;
        let depth = measure(compiled.as_ast(), 1, &mut nodes);
        if nodes > MAX_NODES {
            return Err(format!("the expression has more than {MAX_NODES} nodes"));
        }
        if depth > MAX_DEPTH {
            return Err(format!("the expression is nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(Expression { source: source.into(), compiled })
    }

    /// Whether the projected message makes the expression truthy; an error is no match.
    pub fn matches(&self, projection: &Rcvar) -> bool {
        self.compiled.search(projection).is_ok_and(|v| v.is_truthy())
    }
}

/// The deepest nesting of brackets, parentheses, braces and `!` outside quoted text (an upper
/// bound of the parser's recursion).
fn nesting(source: &str) -> usize {
    let (mut depth, mut deepest, mut nots) = (0usize, 0usize, 0usize);
    let mut quote = None::<u8>;
    let mut bytes = source.bytes().peekable();
    while let Some(b) = bytes.next() {
        if let Some(q) = quote {
            match b {
                b'\\' => {
                    bytes.next();
                }
                _ if b == q => quote = None,
                _ => {}
            }
            continue;
        }
        match b {
            b'\'' | b'"' | b'`' => quote = Some(b),
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth + nots);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'!' if bytes.peek() != Some(&b'=') => {
                nots += 1;
                deepest = deepest.max(depth + nots);
            }
            _ => {}
        }
    }
    deepest
}

/// Counts the nodes into `nodes`; returns the depth below `depth`.
fn measure(ast: &Ast, depth: usize, nodes: &mut usize) -> usize {
    *nodes += 1;
    let children: Vec<&Ast> = match ast {
        Ast::Comparison { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => vec![lhs, rhs],
        Ast::Condition { predicate, then, .. } => vec![predicate, then],
        Ast::Expref { ast, .. } => vec![ast],
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => vec![node],
        Ast::Function { args, .. } | Ast::MultiList { elements: args, .. } => args.iter().collect(),
        Ast::MultiHash { elements, .. } => elements.iter().map(|kv| &kv.value).collect(),
        Ast::Identity { .. } | Ast::Field { .. } | Ast::Index { .. } | Ast::Literal { .. } | Ast::Slice { .. } => {
            Vec::new()
        }
    };
    children.into_iter().map(|c| measure(c, depth + 1, nodes)).max().unwrap_or(depth)
}

/// The document an expression sees for a message, from its V2 frame and its tags:
/// `{event, channel, data, name, userId, tags, headers, messageId, streamId, serial, action}`.
/// `data` that is JSON text (as every HTTP publish's is) is seen parsed, so `data.total`
/// reaches into it; `headers` leaves out the server's `sockudo_*` headers. `None` when the
/// frame is too large or not JSON.
pub fn project(frame: &[u8], event: &str, tags: Option<&super::Tags>) -> Option<Rcvar> {
    if frame.len() > MAX_PROJECTION_BYTES {
        return None;
    }
    let Value::Object(mut f) = serde_json::from_slice(frame).ok()? else { return None };
    let mut doc = Map::new();
    let data = match f.remove("data") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
            _ => Value::String(s),
        },
        Some(v) => v,
        None => Value::Null,
    };
    let mut headers = Map::new();
    let mut action = Value::Null;
    if let Some(Value::Object(h)) = f.get_mut("extras").and_then(|x| x.get_mut("headers")).map(Value::take) {
        for (k, v) in h {
            if k == "sockudo_action" {
                action = v;
            } else if !k.starts_with("sockudo_") {
                headers.insert(k, v);
            }
        }
    }
    let tags = tags.map_or(Value::Null, |t| {
        Value::Object(t.iter().map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect())
    });
    doc.insert("event".into(), Value::String(event.to_owned()));
    doc.insert("channel".into(), f.remove("channel").unwrap_or(Value::Null));
    doc.insert("data".into(), data);
    doc.insert("name".into(), f.remove("name").unwrap_or(Value::Null));
    doc.insert("userId".into(), f.remove("user_id").unwrap_or(Value::Null));
    doc.insert("tags".into(), tags);
    doc.insert("headers".into(), Value::Object(headers));
    doc.insert("messageId".into(), f.remove("message_id").unwrap_or(Value::Null));
    doc.insert("streamId".into(), f.remove("stream_id").unwrap_or(Value::Null));
    doc.insert("serial".into(), f.remove("serial").unwrap_or(Value::Null));
    doc.insert("action".into(), action);
    Variable::try_from(Value::Object(doc)).ok().map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> &'static [u8] {
        br#"{"event":"order","channel":"orders","data":"{\"total\":150,\"items\":[1,2]}","message_id":"m1","stream_id":"s","serial":7,"extras":{"headers":{"priority":"high","sockudo_action":"message.create","sockudo_message_serial":"x"}}}"#
    }

    fn eval(source: &str) -> bool {
        let tags = super::super::Tags::from_json(r#"{"region":"eu"}"#);
        let p = project(frame(), "order", tags.as_ref()).unwrap();
        Expression::compile(source).unwrap().matches(&p)
    }

    #[test]
    fn the_projection_reaches_into_data_headers_and_tags() {
        assert!(eval("data.total >= `100`"));
        assert!(!eval("data.total > `150`"));
        assert!(eval("length(data.items) == `2` && headers.priority == 'high'"));
        assert!(eval("tags.region == 'eu' && event == 'order' && channel == 'orders' && serial == `7`"));
        assert!(eval("action == 'message.create' && messageId == 'm1' && streamId == 's'"));
        assert!(!eval("headers.sockudo_message_serial"));
        // An evaluation error (a function given the wrong type) is no match.
        assert!(!eval("length(serial) == `1`"));
    }

    #[test]
    fn limits_and_syntax_errors() {
        assert!(Expression::compile("").unwrap_err().contains("empty"));
        assert!(Expression::compile("data.[").unwrap_err().contains("invalid JMESPath"));
        assert!(Expression::compile(&"a".repeat(4097)).unwrap_err().contains("longer"));
        assert!(Expression::compile(&format!("{}a{}", "(".repeat(40), ")".repeat(40))).unwrap_err().contains("deeper"));
        assert!(Expression::compile(&format!("{}a", "!".repeat(40))).unwrap_err().contains("deeper"));
        let many = (0..200).map(|i| format!("a{i} == `1`")).collect::<Vec<_>>().join(" || ");
        assert!(Expression::compile(&many).unwrap_err().contains("nodes"));
        assert!(project(&vec![b' '; MAX_PROJECTION_BYTES + 1], "e", None).is_none());
    }
}
