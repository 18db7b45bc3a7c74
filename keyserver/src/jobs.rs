//! Jobs: records submitted from CSV, queued until a card is issued for each.
//!
//! A job is a CSV file checked against its profile and queued as records,
//! all or nothing. A record moves between three states:
//!
//! ```text
//!            reserve (station, request id)            finish: issued
//!  queued ─────────────────────────────────▶ in flight ─────────────────▶ issued
//!     ▲                                          │
//!     └──────────────── finish: void ────────────┘   (void attempts + 1)
//! ```
//!
//! A record is consumed only when its card is issued. A station's request
//! (station name, request id) is remembered with the reservation it got and,
//! once the card is done, with its result; asking again with the same
//! request id returns the same reservation or the recorded result, so a
//! station that resends after a crash never makes the keyserver count a card
//! twice. After a keyserver crash, requests left in flight are voided and
//! their records queued again ([`JobStore::void_in_flight`]).
//!
//! Records hold secrets (PINs, account numbers): sled holds their fields only
//! sealed with AES-256-GCM under the records key, with the job name and the
//! record id as associated data. The secrets an issuance generates (random
//! PIN/PUK) are kept in the job output, sealed the same way.
//!
//! The CSV format is described in [`csv_input`].

pub mod csv_input;
mod seal;
mod store;

pub use csv_input::{RowError, RowErrors, RECORD_ID_COLUMN};
pub use store::{
    CardResult, JobCounts, JobError, JobStore, Recorded, Reservation, Reserved, StaleRequest, Submission,
    MAX_CARD_FAILURES,
};

/// The longest job name, record id, station name or request id accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Whether `name` may name a job: 1 to 64 characters of `A-Z a-z 0-9 . _ -`,
/// not starting with a dot or dash.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Whether `id` may serve as a key part: 1 to [`MAX_NAME_LEN`] bytes, no
/// control characters (in particular no NUL, the key separator).
pub fn valid_key_part(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_NAME_LEN && !id.chars().any(char::is_control)
}
