//! A record of a job: one cardholder, the fields a profile turns into a card.

use std::collections::BTreeMap;

/// One row of a job: its id (unique within the job) and named fields
/// (`given_name`, `surname`, `employee_id`, `email`, `pin`, …), as the
/// profile names them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

impl Record {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}
