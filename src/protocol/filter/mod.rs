//! Subscription filters (`docs/protocol/v2.md#subscription-filters`): which of a channel's
//! messages one subscription receives, by event name, by tags and by a JMESPath expression.
//! Parsed and checked once at subscribe; the delivering shard evaluates each distinct filter
//! once per message (`ws/index.rs`), live and on rewind and recovery alike.

mod expression;
mod tags;

pub use expression::Expression;
pub use tags::{Node, Tags};

use jmespath::Rcvar;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};
use std::cell::OnceCell;

/// What the server's configuration lets filters use (`[tag_filtering]`,
/// `[event_name_filtering]`).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Tag and expression predicates apply; off, they are still checked but ignored.
    pub tags: bool,
    /// Event-name lists apply.
    pub events: bool,
    pub max_events: usize,
    pub max_event_name_length: usize,
}

/// One subscription's filter: every part given must match.
#[derive(Debug, PartialEq)]
pub struct Filter {
    /// Sorted; empty: any event.
    events: Box<[Box<str>]>,
    tags: Option<Node>,
    expression: Option<Expression>,
}

impl Filter {
    /// The `filter` (or `tags_filter`) of a subscribe: `{events, tags, expression}` or,
    /// as older clients send it, a bare tag node. `None` when nothing of it applies under
    /// `settings`. The error names what is wrong.
    pub fn parse(v: &Value, settings: Settings) -> Result<Option<Filter>, String> {
        if !v.is_object() {
            return Err("filter must be a JSON object".into());
        }
        let compound = ["events", "tags", "expression"].iter().any(|k| v.get(k).is_some());
        let (events, tags, expression) = if compound {
            let events = match v.get("events").filter(|e| !e.is_null()) {
                Some(e) => event_names(e, settings)?,
                None => Vec::new(),
            };
            let tags = match v.get("tags").filter(|t| !t.is_null()) {
                Some(t) => Some(Node::parse(t).map_err(|e| format!("Invalid tags filter: {e}"))?),
                None => None,
            };
            let expression = match v.get("expression").filter(|x| !x.is_null()) {
                Some(x) => Some(
                    Expression::compile(expression_source(x)?)
                        .map_err(|e| format!("Invalid filter expression: {e}"))?,
                ),
                None => None,
            };
            (events, tags, expression)
        } else {
            (Vec::new(), Some(Node::parse(v).map_err(|e| format!("Invalid tags filter: {e}"))?), None)
        };
        let filter = Filter {
            events: if settings.events { events.into_boxed_slice() } else { Box::new([]) },
            tags: tags.filter(|_| settings.tags),
            expression: expression.filter(|_| settings.tags),
        };
        Ok((!filter.events.is_empty() || filter.tags.is_some() || filter.expression.is_some()).then_some(filter))
    }

    /// Whether `message` passes; a message the filter cannot see into (no attributes: member
    /// events, mutations, annotations) always does.
    pub fn matches(&self, message: &Subject<'_>) -> bool {
        let Some(attrs) = message.attrs else { return true };
        if !self.events.is_empty() && self.events.binary_search_by(|e| (**e).cmp(&attrs.event)).is_err() {
            return false;
        }
        if self.tags.as_ref().is_some_and(|n| !n.matches(attrs.tags.as_ref())) {
            return false;
        }
        match &self.expression {
            None => true,
            Some(x) => message.projection().is_some_and(|p| x.matches(p)),
        }
    }
}

/// Whether a history row passes `filter` (none: every row does), judged on the message as
/// published, as live delivery judges it.
pub fn row_passes(filter: Option<&Filter>, item: &storage::HistoryItem) -> bool {
    filter.is_none_or(|f| f.matches(&Subject::new(Attrs::of_row(item).as_ref(), &item.payload)))
}

fn event_names(v: &Value, settings: Settings) -> Result<Vec<Box<str>>, String> {
    let list = v.as_array().ok_or("filter.events must be an array of event names")?;
    if list.is_empty() {
        return Err("filter.events must not be empty".into());
    }
    if list.len() > settings.max_events {
        return Err(format!("filter.events holds more than {} names", settings.max_events));
    }
    let mut names = Vec::with_capacity(list.len());
    for e in list.iter() {
        let name = e.as_str().filter(|n| !n.is_empty()).ok_or("filter.events must hold non-empty strings")?;
        if name.len() > settings.max_event_name_length {
            return Err(format!("an event name in filter.events is longer than {}", settings.max_event_name_length));
        }
        names.push(Box::from(name));
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// `"…"` or `{"language":"jmespath","source":"…"}`.
fn expression_source(v: &Value) -> Result<&str, String> {
    if let Some(s) = v.as_str() {
        return Ok(s);
    }
    let lang = v.get("language").and_then(|l| l.as_str()).unwrap_or("jmespath");
    if !lang.eq_ignore_ascii_case("jmespath") {
        return Err(format!("Invalid filter expression: language {lang:?} is not supported (jmespath)"));
    }
    v.get("source")
        .and_then(|s| s.as_str())
        .ok_or_else(|| "Invalid filter expression: a string or {language, source}".into())
}

/// What a published message is filtered on besides its frame: its event name and tags.
#[derive(Debug, PartialEq)]
pub struct Attrs {
    pub event: Box<str>,
    pub tags: Option<Tags>,
}

impl Attrs {
    /// A history row's: filtered as it was live. `None` for a mutation row (never filtered).
    pub fn of_row(item: &storage::HistoryItem) -> Option<Attrs> {
        if matches!(item.kind, storage::RecordKind::Mutation { .. }) {
            return None;
        }
        Some(Attrs { event: item.event_name.as_str().into(), tags: item.tags.as_deref().and_then(Tags::from_json) })
    }
}

/// A message as filters see it: its attributes and its V2 frame, projected for expressions
/// at most once however many filters ask.
pub struct Subject<'a> {
    attrs: Option<&'a Attrs>,
    frame: &'a [u8],
    projection: OnceCell<Option<Rcvar>>,
}

impl<'a> Subject<'a> {
    pub fn new(attrs: Option<&'a Attrs>, frame: &'a [u8]) -> Subject<'a> {
        Subject { attrs, frame, projection: OnceCell::new() }
    }

    fn projection(&self) -> Option<&Rcvar> {
        self.projection
            .get_or_init(|| self.attrs.and_then(|a| expression::project(self.frame, &a.event, a.tags.as_ref())))
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Settings = Settings { tags: true, events: true, max_events: 50, max_event_name_length: 200 };

    fn parse(json: &str, settings: Settings) -> Result<Option<Filter>, String> {
        Filter::parse(&sonic_rs::from_str(json).unwrap(), settings)
    }

    #[test]
    fn compound_parts_are_anded_and_a_bare_node_is_tags() {
        let f =
            parse(r#"{"events":["b","a"],"tags":{"key":"r","cmp":"eq","val":"eu"},"expression":"data.n > `1`"}"#, ON)
                .unwrap()
                .unwrap();
        let eu = Attrs { event: "a".into(), tags: Tags::from_json(r#"{"r":"eu"}"#) };
        let frame = br#"{"event":"a","channel":"c","data":"{\"n\":2}"}"#;
        assert!(f.matches(&Subject::new(Some(&eu), frame)));
        assert!(!f.matches(&Subject::new(Some(&eu), br#"{"event":"a","channel":"c","data":"{\"n\":1}"}"#)));
        let other = Attrs { event: "c".into(), tags: eu.tags.clone() };
        assert!(!f.matches(&Subject::new(Some(&other), frame)));
        let us = Attrs { event: "a".into(), tags: Tags::from_json(r#"{"r":"us"}"#) };
        assert!(!f.matches(&Subject::new(Some(&us), frame)));
        // Frames without attributes (member events, mutations) pass.
        assert!(f.matches(&Subject::new(None, b"{}")));
        let bare = parse(r#"{"key":"r","cmp":"eq","val":"eu"}"#, ON).unwrap().unwrap();
        assert!(bare.matches(&Subject::new(Some(&eu), frame)) && !bare.matches(&Subject::new(Some(&us), frame)));
        // The same filter written differently is the same filter (subscribers are grouped by it).
        let again = parse(
            r#"{"events":["a","b","a"],"tags":{"key":"r","cmp":"eq","val":"eu"},"expression":"data.n > `1`"}"#,
            ON,
        );
        assert_eq!(again.unwrap().unwrap(), f);
    }

    #[test]
    fn switched_off_parts_are_checked_then_ignored() {
        let tags_off = Settings { tags: false, ..ON };
        assert!(parse(r#"{"key":"r","cmp":"eq","val":"eu"}"#, tags_off).unwrap().is_none());
        assert!(parse(r#"{"op":"not","nodes":[]}"#, tags_off).unwrap_err().starts_with("Invalid tags filter"));
        assert!(parse(r#"{"expression":"a.["}"#, tags_off).unwrap_err().starts_with("Invalid filter expression"));
        let events_off = Settings { events: false, ..ON };
        assert!(parse(r#"{"events":["a"]}"#, events_off).unwrap().is_none());
    }

    #[test]
    fn event_lists_and_expression_forms() {
        assert!(parse(r#"{"events":[]}"#, ON).unwrap_err().contains("not be empty"));
        assert!(parse(r#"{"events":[""]}"#, ON).unwrap_err().contains("non-empty"));
        let many: Vec<String> = (0..51).map(|i| format!("\"e{i}\"")).collect();
        assert!(parse(&format!(r#"{{"events":[{}]}}"#, many.join(",")), ON).unwrap_err().contains("more than 50"));
        assert!(parse(&format!(r#"{{"events":["{}"]}}"#, "e".repeat(201)), ON).unwrap_err().contains("longer"));
        assert!(parse(r#"{"expression":{"language":"jmespath","source":"event == 'a'"}}"#, ON).unwrap().is_some());
        assert!(parse(r#"{"expression":{"language":"jsonpath","source":"$"}}"#, ON)
            .unwrap_err()
            .contains("not supported"));
        assert!(parse(r#""x""#, ON).unwrap_err().contains("object"));
    }
}
