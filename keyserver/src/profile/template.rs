//! Text templates with `{field}` placeholders, filled from a record.
//!
//! `{name}` is replaced by the record's field `name` (empty when the record
//! has no such field); `{{` and `}}` stand for literal braces. Field names
//! are ASCII letters, digits and `_`, starting with a letter.

use crate::record::Record;

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Field(String),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("\"{{\" at character {0} is never closed (write \"{{{{\" for a literal brace)")]
    Unclosed(usize),
    #[error("\"}}\" at character {0} closes nothing (write \"}}}}\" for a literal brace)")]
    StrayClose(usize),
    #[error("\"{{{0}}}\" is not a field name (letters, digits and _, starting with a letter)")]
    BadName(String),
}

/// Whether `name` can be a record field's name.
pub fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, n)| *n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, n)| *n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::StrayClose(at)),
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, n) in chars.by_ref() {
                        if n == '}' {
                            closed = true;
                            break;
                        }
                        name.push(n);
                    }
                    if !closed {
                        return Err(TemplateError::Unclosed(at));
                    }
                    if !is_field_name(&name) {
                        return Err(TemplateError::BadName(name));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// A template of literal text only.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: if text.is_empty() {
                Vec::new()
            } else {
                vec![Part::Text(text.to_string())]
            },
        }
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The fields the template reads, in order of appearance.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The length of the literal text, in bytes: a lower bound of any
    /// rendering.
    pub fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Field(_) => 0,
            })
            .sum()
    }

    /// The text with each placeholder replaced by the record's field.
    pub fn render(&self, record: &Record) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(record.field(f).unwrap_or_default()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(pairs: &[(&str, &str)]) -> Record {
        Record {
            id: "r1".into(),
            fields: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn renders_fields_and_escapes() {
        let t = Template::parse("{given_name} {surname} {{x}}").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["given_name", "surname"]);
        let r = record(&[("given_name", "Ada"), ("surname", "Lovelace")]);
        assert_eq!(t.render(&r), "Ada Lovelace {x}");
        assert_eq!(t.literal_len(), " ".len() + " {x}".len());
        assert_eq!(Template::parse("{missing}").unwrap().render(&r), "");
        assert_eq!(Template::literal("abc").render(&r), "abc");
    }

    #[test]
    fn refuses_broken_braces() {
        assert_eq!(Template::parse("a {b"), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("a } b"), Err(TemplateError::StrayClose(2)));
        assert_eq!(Template::parse("{1x}"), Err(TemplateError::BadName("1x".into())));
        assert_eq!(Template::parse("{}"), Err(TemplateError::BadName(String::new())));
        assert_eq!(
            Template::parse("{a b}"),
            Err(TemplateError::BadName("a b".into()))
        );
    }
}
