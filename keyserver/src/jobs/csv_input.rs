//! Reading a job's CSV file: every row checked before anything is queued.
//!
//! The file is UTF-8 CSV with a header row. One column is the record id,
//! [`RECORD_ID_COLUMN`] (`record_id`): unique within the job, 1 to 128
//! characters without control characters. It is kept in clear as the
//! record's key, so it must not itself be a secret (use an employee number
//! or a sequence, not an account number). Every other column names a field
//! the job's profile reads, and every field the profile reads must have a
//! column; an empty cell means "not given" (the profile decides whether that
//! is allowed). Header names are trimmed of surrounding spaces; cell values
//! are taken exactly as they are.
//!
//! A leading UTF-8 byte order mark is ignored. Errors name the file's line
//! (the header is line 1) and the column; they never quote a cell's value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::ports::CardEngine;
use crate::record::Record;

/// The column that holds each record's id.
pub const RECORD_ID_COLUMN: &str = "record_id";

/// At most this many errors are listed (the count says how many more).
const MAX_LISTED_ERRORS: usize = 1000;

/// The most rows one job may have.
pub const MAX_ROWS: usize = 1_000_000;

/// One problem in a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// The file's line (header = 1); 0 for the file as a whole.
    pub row: u64,
    /// The column at fault, if one is.
    pub field: Option<String>,
    pub problem: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, &self.field) {
            (0, None) => write!(f, "{}", self.problem),
            (0, Some(c)) => write!(f, "column {c:?}: {}", self.problem),
            (r, None) => write!(f, "row {r}: {}", self.problem),
            (r, Some(c)) => write!(f, "row {r}, column {c:?}: {}", self.problem),
        }
    }
}

/// Every problem found in a CSV file (none of its records was queued).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowErrors {
    pub errors: Vec<RowError>,
    /// Errors found beyond those listed.
    pub more: usize,
}

impl RowErrors {
    fn push(&mut self, row: u64, field: Option<&str>, problem: impl Into<String>) {
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(RowError {
                row,
                field: field.map(str::to_string),
                problem: problem.into(),
            });
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.more == 0
    }

    pub fn count(&self) -> usize {
        self.errors.len() + self.more
    }
}

impl fmt::Display for RowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s), nothing was queued:", self.count())?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        if self.more > 0 {
            write!(f, "\n  … and {} more", self.more)?;
        }
        Ok(())
    }
}

/// Reads and checks every row of `csv` for `profile`; returns the records,
/// or every problem found.
pub fn read_records(engine: &dyn CardEngine, profile: &str, csv: &[u8]) -> Result<Vec<Record>, RowErrors> {
    let mut errors = RowErrors::default();
    let Some(fields) = engine.profile_fields(profile) else {
        let mut known = engine.profiles();
        known.sort();
        errors.push(
            0,
            None,
            format!("unknown profile {profile:?} (known: {})", known.join(", ")),
        );
        return Err(errors);
    };

    // A spreadsheet's UTF-8 byte order mark is not part of the first name.
    let csv = csv.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(csv);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(csv);
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            errors.push(
                1,
                None,
                format!("the header row is unreadable: {}", csv_problem(&e)),
            );
            return Err(errors);
        }
    };
    if header.is_empty() || header.iter().all(|h| h.trim().is_empty()) {
        errors.push(
            0,
            None,
            "the file is empty: it needs a header row naming the fields",
        );
        return Err(errors);
    }

    // Header: record_id, every profile field, nothing else, no repeats.
    let names: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            errors.push(1, None, format!("column {} has no name", i + 1));
            continue;
        }
        if let Some(first) = seen.insert(name.as_str(), i) {
            errors.push(
                1,
                Some(name),
                format!("column {} repeats column {}", i + 1, first + 1),
            );
            continue;
        }
        if name != RECORD_ID_COLUMN && !fields.iter().any(|f| f == name) {
            errors.push(
                1,
                Some(name),
                format!(
                    "unknown column: profile {profile:?} reads {} (and the id column {RECORD_ID_COLUMN:?})",
                    fields.join(", ")
                ),
            );
        }
    }
    if !seen.contains_key(RECORD_ID_COLUMN) {
        errors.push(
            1,
            Some(RECORD_ID_COLUMN),
            "missing column: every row needs a record id, unique within the job",
        );
    }
    for f in &fields {
        if !seen.contains_key(f.as_str()) {
            errors.push(
                1,
                Some(f),
                format!("missing column: profile {profile:?} reads this field"),
            );
        }
    }
    if !errors.is_empty() {
        // Rows cannot be read meaningfully against a wrong header.
        return Err(errors);
    }

    let mut records = Vec::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut rows = 0usize;
    let mut row = csv::StringRecord::new();
    loop {
        let line_hint = reader.position().line();
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line_hint, |p| p.line());
                errors.push(line, None, csv_problem(&e));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = row.position().map_or(line_hint, |p| p.line());
        rows += 1;
        if rows > MAX_ROWS {
            errors.push(line, None, format!("a job has at most {MAX_ROWS} rows"));
            break;
        }
        let mut id = None;
        let mut values = BTreeMap::new();
        for (name, value) in names.iter().zip(row.iter()) {
            if name == RECORD_ID_COLUMN {
                id = Some(value.to_string());
            } else if !value.is_empty() {
                values.insert(name.clone(), value.to_string());
            }
        }
        let id = id.unwrap_or_default();
        if id.is_empty() {
            errors.push(line, Some(RECORD_ID_COLUMN), "the record id is empty");
        } else if !super::valid_key_part(&id) {
            errors.push(
                line,
                Some(RECORD_ID_COLUMN),
                format!(
                    "a record id has 1 to {} characters and no control characters",
                    super::MAX_NAME_LEN
                ),
            );
        } else if let Some(first) = ids.get(&id) {
            errors.push(
                line,
                Some(RECORD_ID_COLUMN),
                format!("record id {id:?} is already used on row {first}"),
            );
        } else {
            ids.insert(id.clone(), line);
        }
        let record = Record { id, fields: values };
        if let Err(field_errors) = engine.check_record(profile, &record) {
            for fe in field_errors {
                errors.push(line, Some(&fe.field), fe.problem);
            }
        }
        records.push(record);
    }
    if errors.is_empty() && records.is_empty() {
        errors.push(0, None, "the file has a header but no rows: nothing to queue");
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(errors)
    }
}

/// A CSV error in words, without quoting the offending data (it may be a
/// PIN).
fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("the row has {len} fields, the header {expected_len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("field {} is not valid UTF-8", err.field() + 1)
        }
        csv::ErrorKind::Io(io) => format!("the file could not be read: {io}"),
        _ => "malformed CSV".to_string(),
    }
}
