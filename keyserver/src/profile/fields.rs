//! The record fields a profile reads, with their rules.

use crate::ports::FieldError;

/// What characters a field's value may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Any printable text (no control characters).
    Text,
    /// ASCII digits only.
    Digits,
    /// ASCII letters and digits only.
    Alphanumeric,
    /// An e-mail address: `local@domain`, printable ASCII without spaces,
    /// a domain with a dot.
    Email,
}

impl FieldKind {
    pub const NAMES: &'static [&'static str] = &["text", "digits", "alphanumeric", "email"];

    pub fn parse(name: &str) -> Option<FieldKind> {
        Some(match name {
            "text" => FieldKind::Text,
            "digits" => FieldKind::Digits,
            "alphanumeric" => FieldKind::Alphanumeric,
            "email" => FieldKind::Email,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Digits => "digits",
            FieldKind::Alphanumeric => "alphanumeric",
            FieldKind::Email => "email",
        }
    }

    /// Why `value` is not of this kind, if it is not.
    fn problem(self, value: &str) -> Option<String> {
        match self {
            FieldKind::Text => value
                .chars()
                .any(char::is_control)
                .then(|| "contains a control character (line break, tab, …)".to_string()),
            FieldKind::Digits => {
                (!value.bytes().all(|b| b.is_ascii_digit())).then(|| "must be digits only (0-9)".to_string())
            }
            FieldKind::Alphanumeric => (!value.bytes().all(|b| b.is_ascii_alphanumeric()))
                .then(|| "must be letters and digits only (A-Z, a-z, 0-9)".to_string()),
            FieldKind::Email => (!is_email(value)).then(|| format!("{value:?} is not an e-mail address")),
        }
    }
}

fn is_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic() && b != b'@');
    !local.is_empty()
        && printable(local)
        && printable(domain)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// A declared record field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub required: bool,
    pub kind: FieldKind,
    /// Length bounds in characters.
    pub min_len: usize,
    pub max_len: usize,
    /// The profile file's line that declares it.
    pub line: usize,
}

/// The longest value a field may have unless the profile says otherwise.
pub const DEFAULT_MAX_LEN: usize = 64;
/// The longest value any field may have.
pub const MAX_MAX_LEN: usize = 4096;

impl FieldSpec {
    /// Checks one field's value (`None`: the record lacks the field or has
    /// it empty).
    pub fn check(&self, value: Option<&str>, errors: &mut Vec<FieldError>) {
        let err = |problem: String| FieldError {
            field: self.name.clone(),
            problem,
        };
        let value = value.filter(|v| !v.is_empty());
        let Some(value) = value else {
            if self.required {
                errors.push(err("is required".into()));
            }
            return;
        };
        let len = value.chars().count();
        if len < self.min_len {
            errors.push(err(format!(
                "is {len} characters long, at least {} are needed",
                self.min_len
            )));
        }
        if len > self.max_len {
            errors.push(err(format!(
                "is {len} characters long, at most {} are allowed",
                self.max_len
            )));
        }
        if value.trim() != value {
            errors.push(err("starts or ends with white space".into()));
        }
        if let Some(p) = self.kind.problem(value) {
            errors.push(err(p));
        }
    }

    /// A one-line description: `email (required, email, 1-64 characters)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {}, {}-{} characters)",
            self.name,
            if self.required { "required" } else { "optional" },
            self.kind.name(),
            self.min_len,
            self.max_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FieldKind, required: bool) -> FieldSpec {
        FieldSpec {
            name: "f".into(),
            required,
            kind,
            min_len: 2,
            max_len: 5,
            line: 1,
        }
    }

    fn problems(s: &FieldSpec, v: Option<&str>) -> Vec<String> {
        let mut e = Vec::new();
        s.check(v, &mut e);
        e.into_iter().map(|e| e.problem).collect()
    }

    #[test]
    fn rules() {
        assert_eq!(problems(&spec(FieldKind::Text, true), None), ["is required"]);
        assert_eq!(problems(&spec(FieldKind::Text, true), Some("")), ["is required"]);
        assert!(problems(&spec(FieldKind::Text, false), None).is_empty());
        assert!(problems(&spec(FieldKind::Digits, true), Some("123")).is_empty());
        assert_eq!(
            problems(&spec(FieldKind::Digits, true), Some("12a4567")),
            [
                "is 7 characters long, at most 5 are allowed",
                "must be digits only (0-9)"
            ]
        );
        assert_eq!(
            problems(&spec(FieldKind::Text, true), Some("a")),
            ["is 1 characters long, at least 2 are needed"]
        );
        assert_eq!(
            problems(&spec(FieldKind::Text, true), Some(" ab")),
            ["starts or ends with white space"]
        );
        assert!(problems(&spec(FieldKind::Text, true), Some("a\nb"))[0].contains("control"));
        assert!(problems(&spec(FieldKind::Alphanumeric, true), Some("a-b"))[0].contains("letters"));
    }

    #[test]
    fn emails() {
        for good in ["a@b.c", "ada.lovelace@example.org", "x+y@mail.example.com"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@b", "@b.c", "a@.b", "a@b.", "a b@c.d", "a@b..c", "a@b@c.d",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
