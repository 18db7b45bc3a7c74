//! A record of a job: one cardholder, the fields a profile turns into a card.

use std::collections::BTreeMap;

/// One row of a job: its id (unique within the job) and named fields
/// (`given_name`, `surname`, `employee_id`, `email`, `pin`, …), as the
/// profile names them.
///
/// Fields hold secrets (a PIN, an account number): `Debug` shows the record
/// id (not secret) and the field names, never a value.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("fields", &FieldNames(&self.fields))
            .finish()
    }
}

/// The names of a record's fields, each shown as `name: [REDACTED]`.
struct FieldNames<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for FieldNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, Redacted)))
            .finish()
    }
}

struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Record {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_field_names_and_no_value() {
        let r = Record {
            id: "r1".into(),
            fields: [("pin", "739184"), ("surname", "Hopper")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for shown in [format!("{r:?}"), format!("{r:#?}")] {
            assert!(
                shown.contains("\"pin\"") && shown.contains("\"surname\""),
                "{shown}"
            );
            assert!(shown.contains("\"r1\""), "{shown}");
            assert!(!shown.contains("739184") && !shown.contains("Hopper"), "{shown}");
        }
    }
}
