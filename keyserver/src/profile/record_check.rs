//! Checking a record against its profile, before it is queued: each field's
//! rules, then what the fields turn into on the card (lengths of printed
//! information, certificate subjects, EF contents).

use crate::ports::{DnAttribute, FieldError};
use crate::record::Record;

use super::template::Template;
use super::{Profile, SanTemplate};

/// Longest subject attribute values (RFC 5280 upper bounds).
fn dn_limit(attr: &DnAttribute) -> usize {
    match attr {
        DnAttribute::Country => 2,
        DnAttribute::EmailAddress => 255,
        _ => 64,
    }
}

fn dn_name(attr: &DnAttribute) -> &'static str {
    match attr {
        DnAttribute::CommonName => "CN",
        DnAttribute::Organization => "O",
        DnAttribute::OrganizationalUnit => "OU",
        DnAttribute::Country => "C",
        DnAttribute::EmailAddress => "emailAddress",
        DnAttribute::SerialNumber => "serialNumber",
    }
}

/// Reports a filled-in template that breaks a limit, under the first field
/// it reads (or the setting itself, for literal text).
fn blame(t: &Template, setting: &str, problem: String, errors: &mut Vec<FieldError>) {
    let field = t.fields().next().unwrap_or(setting).to_string();
    errors.push(FieldError {
        field,
        problem: format!("makes {setting} {problem}"),
    });
}

fn limit(t: &Template, record: &Record, setting: &str, max: usize, errors: &mut Vec<FieldError>) {
    let len = t.render(record).len();
    if len > max {
        blame(t, setting, format!("{len} bytes long (at most {max})"), errors);
    }
}

impl Profile {
    /// Checks a record: every declared field's rules, no undeclared field,
    /// and the lengths of what the fields fill in. Every problem is
    /// reported.
    pub fn check_record(&self, record: &Record) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if record.id.trim().is_empty() {
            errors.push(FieldError {
                field: "id".into(),
                problem: "the record has no id".into(),
            });
        }
        for spec in &self.fields {
            spec.check(record.field(&spec.name), &mut errors);
        }
        for name in record.fields.keys() {
            if self.field(name).is_none() {
                errors.push(FieldError {
                    field: name.clone(),
                    problem: format!(
                        "is not a field of profile {} (its fields: {})",
                        self.id,
                        self.field_names().join(", ")
                    ),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.check_filled(record, &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_filled(&self, record: &Record, errors: &mut Vec<FieldError>) {
        if let Some(p) = &self.printed_information {
            limit(&p.name, record, "printed_information.name", 125, errors);
            if p.name.render(record).is_empty() {
                blame(&p.name, "printed_information.name", "empty".into(), errors);
            }
            let optional = [
                (
                    &p.employee_affiliation,
                    "printed_information.employee_affiliation",
                    20,
                ),
                (
                    &p.organization_affiliation,
                    "printed_information.organization_affiliation",
                    20,
                ),
                (
                    &p.organization_affiliation_2,
                    "printed_information.organization_affiliation_2",
                    20,
                ),
                (
                    &p.agency_card_serial_number,
                    "printed_information.agency_card_serial_number",
                    20,
                ),
                (
                    &p.issuer_identification,
                    "printed_information.issuer_identification",
                    15,
                ),
            ];
            for (t, setting, max) in optional {
                if let Some(t) = t {
                    limit(t, record, setting, max, errors);
                }
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let cert = &slot.certificate;
            for (attr, t) in &cert.subject {
                let setting = format!("slot[{i}].certificate.subject.{}", dn_name(attr));
                let value = t.render(record);
                limit(t, record, &setting, dn_limit(attr), errors);
                if *attr == DnAttribute::CommonName && value.trim().is_empty() {
                    blame(t, &setting, "empty".into(), errors);
                }
                if *attr == DnAttribute::Country
                    && !value.is_empty()
                    && !value.bytes().all(|b| b.is_ascii_uppercase())
                {
                    blame(
                        t,
                        &setting,
                        format!("{value:?}, not a two-letter country code"),
                        errors,
                    );
                }
            }
            for (j, san) in cert.subject_alt_names.iter().enumerate() {
                let setting = format!("slot[{i}].certificate.san[{j}]");
                let (t, ok): (&Template, fn(&str) -> bool) = match san {
                    SanTemplate::Email(t) => (t, |v| v.contains('@') && v.is_ascii() && !v.contains(' ')),
                    SanTemplate::Dns(t) => (t, |v| {
                        v.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'*')
                    }),
                    SanTemplate::Uri(t) => (t, |v| v.is_ascii() && v.contains(':') && !v.contains(' ')),
                };
                let value = t.render(record);
                if !value.is_empty() && !ok(&value) {
                    blame(
                        t,
                        &setting,
                        format!("{value:?}, which does not fit a certificate name"),
                        errors,
                    );
                }
                limit(t, record, &setting, 255, errors);
            }
        }
        for (i, df) in self.files.iter().enumerate() {
            for (j, ef) in df.efs.iter().enumerate() {
                let setting = format!("df[{i}].ef[{j}].content");
                limit(&ef.content, record, &setting, usize::from(ef.size), errors);
            }
        }
    }
}
