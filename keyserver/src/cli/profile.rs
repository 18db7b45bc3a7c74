//! `keyserver profile check`: every error of a profile with file, line and
//! setting; on success the escrow policy per slot and the record fields.
use std::path::Path;
use std::process::ExitCode;

use super::CliResult;
use crate::profile::{LoadError, Profile, SecretSource};

pub fn check(file: &Path) -> CliResult {
    let profile = match Profile::load(file) {
        Ok(p) => p,
        Err(LoadError::Invalid { errors, .. }) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", explain(&profile));
    Ok(ExitCode::SUCCESS)
}

fn secret(what: &str, s: &SecretSource) -> String {
    match s {
        SecretSource::Random { digits } => {
            format!("{what}: {digits} random digits, delivered sealed in the job output")
        }
        SecretSource::Field(f) => format!("{what}: from the record's field {f:?}"),
    }
}

/// What `profile check` prints for a valid profile.
pub fn explain(p: &Profile) -> String {
    let mut out = format!("{}: profile {:?} is valid", p.source, p.id);
    if !p.description.is_empty() {
        out.push_str(&format!(" ({})", p.description));
    }
    out.push_str("\n\nescrow policy:\n");
    if p.slots.is_empty() {
        out.push_str("  (no key slots)\n");
    }
    for s in &p.slots {
        out.push_str(&format!("  {}\n", Profile::describe_policy(s)));
    }
    let overrides = p.escrow_overrides().count();
    if overrides > 0 {
        out.push_str(&format!(
            "  {overrides} override(s): recorded in the audit log (profile.escrow-override) when \
             the keyserver loads the profile and for every card\n"
        ));
    }
    out.push_str(&format!(
        "\nround trips per card: {}\n",
        if p.has_card_generated_keys() {
            "3 (keys generated on the card get their certificates in the third)"
        } else {
            "2"
        }
    ));
    out.push_str("\nrecord fields:\n");
    if p.fields.is_empty() {
        out.push_str("  (none)\n");
    }
    for f in &p.fields {
        out.push_str(&format!("  {}\n", f.describe()));
    }
    out.push_str(&format!(
        "\n{}\n{}\n",
        secret("PIN", &p.pin),
        secret("PUK", &p.puk)
    ));
    out
}
