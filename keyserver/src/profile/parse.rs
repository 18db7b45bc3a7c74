//! Reading a profile: the TOML document is walked with the positions of
//! every key and value, so that each error names its file, line and
//! setting, and every error is collected before the profile is refused.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use vsc::file::{AccessRule, EfArea, PinPolicy, MAX_NODES, MF_FID};

use super::fields::{FieldKind, FieldSpec, DEFAULT_MAX_LEN, MAX_MAX_LEN};
use super::template::{is_field_name, Template};
use super::{
    default_policy, is_key_slot, Algorithm, CertificateTemplate, DfSpec, EfSpec, KeyPolicy,
    PrintedInformation, Profile, ProfileError, ProfileErrors, SanTemplate, SecretSource, SlotSpec,
    SECURITY_LEVEL,
};
use crate::ports::{DnAttribute, ExtendedKeyUsage, KeyUsage};

type Value<'i> = Spanned<DeValue<'i>>;

/// The longest a card may be valid: 20 years.
const MAX_VALIDITY_DAYS: i64 = 20 * 366;
/// The largest EF a profile may create (15-bit offsets).
const MAX_EF_SIZE: i64 = 0x7FFF;

/// Collects errors with their lines.
struct Parser<'s> {
    file: &'s str,
    line_starts: Vec<usize>,
    errors: Vec<ProfileError>,
}

impl Parser<'_> {
    fn line(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn err(&mut self, span: &Range<usize>, path: &str, message: impl Into<String>) {
        let line = self.line(span.start);
        self.errors.push(ProfileError {
            file: self.file.to_string(),
            line,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn string<'v>(&mut self, v: &'v Value<'_>, path: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                self.err(
                    &v.span(),
                    path,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, path: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(&v.span(), path, "integer out of range");
                    None
                }
            },
            other => {
                self.err(
                    &v.span(),
                    path,
                    format!("expected an integer, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// An integer within `range`.
    fn bounded(&mut self, v: &Value<'_>, path: &str, range: Range<i64>) -> Option<i64> {
        let n = self.integer(v, path)?;
        if range.contains(&n) {
            Some(n)
        } else {
            self.err(
                &v.span(),
                path,
                format!("{n} is out of range ({} to {})", range.start, range.end - 1),
            );
            None
        }
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    &v.span(),
                    path,
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn table<'a, 'i>(&mut self, v: &'a Value<'i>, path: String) -> Option<Tab<'a, 'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(Tab::new(t, v.span(), path)),
            other => {
                self.err(
                    &v.span(),
                    &path,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn array<'a, 'i>(&mut self, v: &'a Value<'i>, path: &str) -> Option<&'a [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            other => {
                self.err(
                    &v.span(),
                    path,
                    format!("expected an array, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A string that is one of `names`, mapped by `parse`.
    fn choice<T>(
        &mut self,
        v: &Value<'_>,
        path: &str,
        names: &[&str],
        what: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let s = self.string(v, path)?;
        let parsed = parse(s);
        if parsed.is_none() {
            self.err(
                &v.span(),
                path,
                format!("{s:?} is not {what} ({})", names.join(", ")),
            );
        }
        parsed
    }

    /// A template whose fields are all declared.
    fn template(&mut self, v: &Value<'_>, path: &str, declared: &BTreeSet<String>) -> Option<Template> {
        let s = self.string(v, path)?;
        match Template::parse(s) {
            Ok(t) => {
                let mut ok = true;
                for f in t.fields() {
                    if !declared.contains(f) {
                        self.err(
                            &v.span(),
                            path,
                            format!("reads field {f:?}, which [fields] does not declare"),
                        );
                        ok = false;
                    }
                }
                ok.then_some(t)
            }
            Err(e) => {
                self.err(&v.span(), path, e.to_string());
                None
            }
        }
    }

    /// A file identifier: `"5001"` (four hex digits) or an integer.
    fn fid(&mut self, v: &Value<'_>, path: &str) -> Option<u16> {
        let fid = match v.get_ref() {
            DeValue::String(s) => {
                let parsed = (s.len() == 4).then(|| u16::from_str_radix(s, 16).ok()).flatten();
                if parsed.is_none() {
                    self.err(
                        &v.span(),
                        path,
                        format!("{s:?} is not a file identifier (four hex digits)"),
                    );
                }
                parsed?
            }
            DeValue::Integer(_) => {
                let n = self.bounded(v, path, 0..0x1_0000)?;
                u16::try_from(n).ok()?
            }
            other => {
                self.err(
                    &v.span(),
                    path,
                    format!(
                        "expected a file identifier (\"5001\"), found {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        if matches!(fid, MF_FID | 0x3FFF | 0xFFFF) {
            self.err(
                &v.span(),
                path,
                format!("{fid:04X} is reserved (3F00, 3FFF, FFFF)"),
            );
            return None;
        }
        Some(fid)
    }
}

/// A table's entries in document order, with the path that names it.
struct Tab<'a, 'i> {
    entries: Vec<(&'a str, Range<usize>, &'a Value<'i>)>,
    span: Range<usize>,
    path: String,
}

impl<'a, 'i> Tab<'a, 'i> {
    fn new(map: &'a DeTable<'i>, span: Range<usize>, path: String) -> Self {
        let mut entries: Vec<_> = map
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
            .collect();
        entries.sort_by_key(|(_, span, _)| span.start);
        Tab { entries, span, path }
    }

    fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    fn sub(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Reports keys not in `known`.
    fn known(&self, p: &mut Parser<'_>, known: &[&str]) {
        for (k, span, _) in &self.entries {
            if !known.contains(k) {
                p.err(
                    span,
                    &self.sub(k),
                    format!("unknown setting (known here: {})", known.join(", ")),
                );
            }
        }
    }

    /// A required value; reports its absence at the table.
    fn required(&self, p: &mut Parser<'_>, key: &str) -> Option<&'a Value<'i>> {
        let v = self.get(key);
        if v.is_none() {
            p.err(&self.span, &self.sub(key), "is required");
        }
        v
    }
}

pub(super) fn parse(text: &str, source: &str) -> Result<Profile, ProfileErrors> {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut p = Parser {
        file: source,
        line_starts,
        errors: Vec::new(),
    };
    let (root, syntax) = DeTable::parse_recoverable(text);
    for e in &syntax {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        p.err(&span, "", format!("TOML syntax: {message}"));
    }
    let profile = if syntax.is_empty() {
        let root = Tab::new(root.get_ref(), 0..0, String::new());
        profile(&mut p, &root, source)
    } else {
        None
    };
    match profile {
        Some(profile) if p.errors.is_empty() => Ok(profile),
        _ => {
            p.errors.sort_by_key(|e| e.line);
            Err(ProfileErrors(p.errors))
        }
    }
}

const ROOT_KEYS: &[&str] = &[
    "id",
    "description",
    "security_level",
    "card",
    "fields",
    "pin",
    "puk",
    "management_key",
    "chuid",
    "discovery",
    "printed_information",
    "slot",
    "df",
];

fn profile(p: &mut Parser<'_>, root: &Tab<'_, '_>, source: &str) -> Option<Profile> {
    root.known(p, ROOT_KEYS);
    let id = root.required(p, "id").and_then(|v| {
        let id = p.string(v, "id")?;
        let good = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !good {
            p.err(
                &v.span(),
                "id",
                format!("{id:?} is not a profile id (a-z, 0-9, - and _, up to 64)"),
            );
            return None;
        }
        let stem = Path::new(source)
            .extension()
            .is_some_and(|e| e == "toml")
            .then(|| Path::new(source).file_stem().and_then(|s| s.to_str()))
            .flatten();
        if let Some(stem) = stem {
            if stem != id {
                p.err(
                    &v.span(),
                    "id",
                    format!("{id:?} differs from the file name {stem:?} (a profile's id is its file name)"),
                );
            }
        }
        Some(id.to_string())
    });
    let description = match root.get("description") {
        Some(v) => p.string(v, "description").unwrap_or_default().to_string(),
        None => String::new(),
    };
    if let Some(v) = root.get("security_level") {
        if let Some(level) = p.integer(v, "security_level") {
            if level != i64::from(SECURITY_LEVEL) {
                p.err(
                    &v.span(),
                    "security_level",
                    format!("0x{level:X} is not supported: cards are personalized at 0x33 (C-DEC, C-MAC, R-MAC, R-ENC)"),
                );
            }
        }
    }
    let card_validity_days = card(p, root);
    let fields = fields(p, root);
    // Every field the profile names counts as declared, even one whose
    // rules are wrong: that error is reported once, not again at each use.
    let declared = declared_names(root);
    let pin = secret(p, root, "pin", 6, &fields);
    let puk = secret(p, root, "puk", 8, &fields);
    if let Some(v) = root.get("management_key") {
        if let Some(t) = p.table(v, "management_key".into()) {
            t.known(p, &["algorithm"]);
            if let Some(a) = t.get("algorithm") {
                p.choice(
                    a,
                    &t.sub("algorithm"),
                    &["aes192"],
                    "a management key algorithm",
                    |s| (s == "aes192").then_some(()),
                );
            }
        }
    }
    let chuid = flag_table(p, root, "chuid");
    let discovery = flag_table(p, root, "discovery");
    let printed_information = root
        .get("printed_information")
        .and_then(|v| printed(p, v, &declared));
    let slots = slots(p, root, &declared, card_validity_days);
    let files = files(p, root, &declared);
    Some(Profile {
        id: id?,
        description,
        source: source.to_string(),
        card_validity_days: card_validity_days?,
        fields,
        pin: pin?,
        puk: puk?,
        chuid: chuid?,
        discovery: discovery?,
        printed_information,
        slots: slots?,
        files: files?,
    })
}

fn card(p: &mut Parser<'_>, root: &Tab<'_, '_>) -> Option<u32> {
    let Some(v) = root.get("card") else {
        p.err(
            &(0..0),
            "card",
            "is required: [card] validity_days = … (how long the card is valid)",
        );
        return None;
    };
    let t = p.table(v, "card".into())?;
    t.known(p, &["validity_days"]);
    let v = t.required(p, "validity_days")?;
    let days = p.bounded(v, &t.sub("validity_days"), 1..MAX_VALIDITY_DAYS + 1)?;
    u32::try_from(days).ok()
}

/// `[chuid]`, `[discovery]`: present (an empty table, or `true`) or not.
fn flag_table(p: &mut Parser<'_>, root: &Tab<'_, '_>, key: &str) -> Option<bool> {
    let Some(v) = root.get(key) else {
        return Some(false);
    };
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        _ => {
            let t = p.table(v, key.into())?;
            t.known(p, &[]);
            Some(true)
        }
    }
}

fn declared_names(root: &Tab<'_, '_>) -> BTreeSet<String> {
    match root.get("fields").map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
        _ => BTreeSet::new(),
    }
}

fn fields(p: &mut Parser<'_>, root: &Tab<'_, '_>) -> Vec<FieldSpec> {
    let Some(v) = root.get("fields") else {
        return Vec::new();
    };
    let Some(t) = p.table(v, "fields".into()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, name_span, v) in &t.entries {
        let path = t.sub(name);
        if !is_field_name(name) {
            p.err(
                name_span,
                &path,
                "is not a field name (letters, digits and _, starting with a letter)",
            );
            continue;
        }
        let Some(f) = p.table(v, path.clone()) else {
            continue;
        };
        f.known(p, &["required", "rule", "min_len", "max_len"]);
        let required = f
            .get("required")
            .and_then(|v| p.boolean(v, &f.sub("required")))
            .unwrap_or(false);
        let kind = match f.get("rule") {
            Some(v) => p.choice(v, &f.sub("rule"), FieldKind::NAMES, "a rule", FieldKind::parse),
            None => Some(FieldKind::Text),
        };
        let max = MAX_MAX_LEN as i64;
        let min_len = match f.get("min_len") {
            Some(v) => p.bounded(v, &f.sub("min_len"), 0..max + 1),
            None => Some(i64::from(required)),
        };
        let max_len = match f.get("max_len") {
            Some(v) => p.bounded(v, &f.sub("max_len"), 1..max + 1),
            None => Some(DEFAULT_MAX_LEN as i64),
        };
        if let (Some(lo), Some(hi)) = (min_len, max_len) {
            if lo > hi {
                p.err(&f.span, &path, format!("min_len {lo} is more than max_len {hi}"));
                continue;
            }
        }
        let (Some(kind), Some(min_len), Some(max_len)) = (kind, min_len, max_len) else {
            continue;
        };
        out.push(FieldSpec {
            name: name.to_string(),
            required,
            kind,
            min_len: usize::try_from(min_len).unwrap_or(0),
            max_len: usize::try_from(max_len).unwrap_or(DEFAULT_MAX_LEN),
            line: p.line(name_span.start),
        });
    }
    out
}

/// `[pin]` / `[puk]`: `source = "random"` (with `digits`) or `"field"`.
fn secret(
    p: &mut Parser<'_>,
    root: &Tab<'_, '_>,
    key: &str,
    default_digits: usize,
    fields: &[FieldSpec],
) -> Option<SecretSource> {
    let Some(v) = root.get(key) else {
        return Some(SecretSource::Random {
            digits: default_digits,
        });
    };
    let t = p.table(v, key.into())?;
    t.known(p, &["source", "field", "digits"]);
    let source = t.required(p, "source")?;
    let source = p.choice(source, &t.sub("source"), &["random", "field"], "a source", |s| {
        matches!(s, "random" | "field").then(|| s.to_string())
    })?;
    if source == "random" {
        if let Some(f) = t.get("field") {
            p.err(&f.span(), &t.sub("field"), "only with source = \"field\"");
        }
        let digits = match t.get("digits") {
            Some(v) => usize::try_from(p.bounded(v, &t.sub("digits"), 6..9)?).ok()?,
            None => default_digits,
        };
        return Some(SecretSource::Random { digits });
    }
    if let Some(d) = t.get("digits") {
        p.err(&d.span(), &t.sub("digits"), "only with source = \"random\"");
    }
    let fv = t.required(p, "field")?;
    let name = p.string(fv, &t.sub("field"))?;
    let Some(spec) = fields.iter().find(|f| f.name == name) else {
        p.err(
            &fv.span(),
            &t.sub("field"),
            format!("{name:?} is not declared under [fields]"),
        );
        return None;
    };
    let fit = spec.required && spec.kind == FieldKind::Digits && spec.min_len >= 6 && spec.max_len <= 8;
    if !fit {
        p.err(
            &fv.span(),
            &t.sub("field"),
            format!(
                "field {name:?} must be required, rule = \"digits\", min_len >= 6 and max_len <= 8 \
                 (a PIV {} is 6 to 8 digits)",
                key.to_uppercase()
            ),
        );
        return None;
    }
    Some(SecretSource::Field(name.to_string()))
}

fn printed(p: &mut Parser<'_>, v: &Value<'_>, declared: &BTreeSet<String>) -> Option<PrintedInformation> {
    let t = p.table(v, "printed_information".into())?;
    const KEYS: &[&str] = &[
        "name",
        "employee_affiliation",
        "organization_affiliation",
        "organization_affiliation_2",
        "agency_card_serial_number",
        "issuer_identification",
    ];
    t.known(p, KEYS);
    let mut get = |key: &str, limit: usize| -> Option<Option<Template>> {
        let Some(v) = t.get(key) else {
            return Some(None);
        };
        let path = t.sub(key);
        let tpl = p.template(v, &path, declared)?;
        if tpl.literal_len() > limit {
            p.err(
                &v.span(),
                &path,
                format!(
                    "is {} bytes before any field is filled in, at most {limit} fit",
                    tpl.literal_len()
                ),
            );
            return None;
        }
        Some(Some(tpl))
    };
    let employee_affiliation = get("employee_affiliation", 20);
    let organization_affiliation = get("organization_affiliation", 20);
    let organization_affiliation_2 = get("organization_affiliation_2", 20);
    let agency_card_serial_number = get("agency_card_serial_number", 20);
    let issuer_identification = get("issuer_identification", 15);
    let name = get("name", 125);
    let name = match name {
        Some(Some(n)) => Some(n),
        Some(None) => {
            p.err(&t.span, &t.sub("name"), "is required");
            None
        }
        None => None,
    };
    Some(PrintedInformation {
        name: name?,
        employee_affiliation: employee_affiliation?,
        organization_affiliation: organization_affiliation?,
        organization_affiliation_2: organization_affiliation_2?,
        agency_card_serial_number: agency_card_serial_number?,
        issuer_identification: issuer_identification?,
    })
}

fn slot_ref(name: &str) -> Option<u8> {
    let n = (name.len() == 2)
        .then(|| u8::from_str_radix(name, 16).ok())
        .flatten()?;
    is_key_slot(n).then_some(n)
}

fn pin_policy(name: &str) -> Option<PinPolicy> {
    match name {
        "never" => Some(PinPolicy::Never),
        "once" => Some(PinPolicy::Once),
        "always" => Some(PinPolicy::Always),
        _ => None,
    }
}

fn slots(
    p: &mut Parser<'_>,
    root: &Tab<'_, '_>,
    declared: &BTreeSet<String>,
    card_days: Option<u32>,
) -> Option<Vec<SlotSpec>> {
    let Some(v) = root.get("slot") else {
        return Some(Vec::new());
    };
    let items = p.array(v, "slot")?;
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen: Vec<u8> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("slot[{i}]");
        let Some(t) = p.table(item, path.clone()) else {
            ok = false;
            continue;
        };
        t.known(p, &["key", "algorithm", "escrow", "pin_policy", "certificate"]);
        let slot = t.required(p, "key").and_then(|v| {
            p.choice(
                v,
                &t.sub("key"),
                &["9a", "9c", "9d", "9e", "82-95"],
                "a key slot",
                slot_ref,
            )
        });
        if let (Some(s), Some(v)) = (slot, t.get("key")) {
            if seen.contains(&s) {
                p.err(&v.span(), &t.sub("key"), format!("slot {s:02X} appears twice"));
                ok = false;
            }
            seen.push(s);
        }
        let algorithm = t.required(p, "algorithm").and_then(|v| {
            p.choice(
                v,
                &t.sub("algorithm"),
                Algorithm::NAMES,
                "supported",
                Algorithm::parse,
            )
        });
        let policy = match t.get("escrow") {
            Some(v) => p
                .choice(
                    v,
                    &t.sub("escrow"),
                    &["escrow", "card"],
                    "an escrow policy",
                    KeyPolicy::parse,
                )
                .map(Some),
            None => Some(None),
        };
        let pin = match t.get("pin_policy") {
            Some(v) => p
                .choice(
                    v,
                    &t.sub("pin_policy"),
                    &["never", "once", "always"],
                    "a PIN policy",
                    pin_policy,
                )
                .map(Some),
            None => Some(None),
        };
        let certificate = t
            .required(p, "certificate")
            .and_then(|v| certificate(p, v, t.sub("certificate"), declared, algorithm, card_days));
        let (Some(slot), Some(algorithm), Some(policy), Some(pin_policy), Some(certificate)) =
            (slot, algorithm, policy, pin, certificate)
        else {
            ok = false;
            continue;
        };
        let default = default_policy(slot);
        let policy_set = policy.unwrap_or(default);
        out.push(SlotSpec {
            slot,
            algorithm,
            policy: policy_set,
            policy_overridden: policy_set != default,
            pin_policy,
            certificate,
            line: p.line(t.span.start),
        });
    }
    ok.then_some(out)
}

fn dn_attribute(name: &str) -> Option<DnAttribute> {
    Some(match name {
        "CN" => DnAttribute::CommonName,
        "O" => DnAttribute::Organization,
        "OU" => DnAttribute::OrganizationalUnit,
        "C" => DnAttribute::Country,
        "emailAddress" => DnAttribute::EmailAddress,
        "serialNumber" => DnAttribute::SerialNumber,
        _ => return None,
    })
}

const DN_NAMES: &[&str] = &["CN", "O", "OU", "C", "emailAddress", "serialNumber"];

fn key_usage(name: &str) -> Option<KeyUsage> {
    Some(match name {
        "digital_signature" => KeyUsage::DigitalSignature,
        "non_repudiation" => KeyUsage::NonRepudiation,
        "key_encipherment" => KeyUsage::KeyEncipherment,
        "data_encipherment" => KeyUsage::DataEncipherment,
        "key_agreement" => KeyUsage::KeyAgreement,
        _ => return None,
    })
}

const KEY_USAGES: &[&str] = &[
    "digital_signature",
    "non_repudiation",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
];

fn is_dotted_oid(s: &str) -> bool {
    let arcs: Vec<&str> = s.split('.').collect();
    arcs.len() >= 2
        && arcs
            .iter()
            .all(|a| !a.is_empty() && a.len() <= 18 && a.bytes().all(|b| b.is_ascii_digit()))
        && arcs.first().is_some_and(|a| matches!(*a, "0" | "1" | "2"))
}

fn eku(name: &str) -> Option<ExtendedKeyUsage> {
    Some(match name {
        "client_auth" => ExtendedKeyUsage::ClientAuth,
        "email_protection" => ExtendedKeyUsage::EmailProtection,
        "code_signing" => ExtendedKeyUsage::CodeSigning,
        "smartcard_logon" => ExtendedKeyUsage::SmartcardLogon,
        oid if is_dotted_oid(oid) => ExtendedKeyUsage::Other(oid.to_string()),
        _ => return None,
    })
}

const EKUS: &[&str] = &[
    "client_auth",
    "email_protection",
    "code_signing",
    "smartcard_logon",
    "a dotted OID",
];

fn certificate(
    p: &mut Parser<'_>,
    v: &Value<'_>,
    path: String,
    declared: &BTreeSet<String>,
    algorithm: Option<Algorithm>,
    card_days: Option<u32>,
) -> Option<CertificateTemplate> {
    let t = p.table(v, path)?;
    t.known(
        p,
        &[
            "subject",
            "validity_days",
            "key_usage",
            "extended_key_usage",
            "san",
        ],
    );
    let mut ok = true;
    // Subject.
    let mut subject = Vec::new();
    if let Some(sv) = t.required(p, "subject") {
        if let Some(st) = p.table(sv, t.sub("subject")) {
            for (name, name_span, value) in &st.entries {
                let apath = st.sub(name);
                let Some(attr) = dn_attribute(name) else {
                    p.err(
                        name_span,
                        &apath,
                        format!("is not a subject attribute ({})", DN_NAMES.join(", ")),
                    );
                    ok = false;
                    continue;
                };
                match p.template(value, &apath, declared) {
                    Some(tpl) => subject.push((attr, tpl)),
                    None => ok = false,
                }
            }
            if !st.entries.iter().any(|(k, _, _)| *k == "CN") {
                p.err(&st.span, &st.sub("CN"), "is required (the subject's common name)");
                ok = false;
            }
        } else {
            ok = false;
        }
    } else {
        ok = false;
    }
    // Validity.
    let validity_days = t.required(p, "validity_days").and_then(|v| {
        let days = p.bounded(v, &t.sub("validity_days"), 1..MAX_VALIDITY_DAYS + 1)?;
        if let Some(card) = card_days {
            if days > i64::from(card) {
                p.err(
                    &v.span(),
                    &t.sub("validity_days"),
                    format!("{days} days outlive the card ([card] validity_days = {card})"),
                );
                return None;
            }
        }
        u32::try_from(days).ok()
    });
    // Key usage.
    let mut usages = Vec::new();
    if let Some(kv) = t.get("key_usage") {
        let kpath = t.sub("key_usage");
        if let Some(items) = p.array(kv, &kpath) {
            for (i, item) in items.iter().enumerate() {
                let ipath = format!("{kpath}[{i}]");
                let Some(u) = p.choice(item, &ipath, KEY_USAGES, "a key usage", key_usage) else {
                    ok = false;
                    continue;
                };
                let fits = match (algorithm, u) {
                    (Some(Algorithm::P256), KeyUsage::KeyEncipherment | KeyUsage::DataEncipherment) => {
                        Err("a P-256 key cannot encipher (use key_agreement)")
                    }
                    (Some(Algorithm::Rsa2048), KeyUsage::KeyAgreement) => {
                        Err("an RSA key cannot do key agreement (use key_encipherment)")
                    }
                    _ => Ok(()),
                };
                if let Err(why) = fits {
                    p.err(&item.span(), &ipath, why);
                    ok = false;
                    continue;
                }
                if usages.contains(&u) {
                    p.err(&item.span(), &ipath, "appears twice");
                    ok = false;
                    continue;
                }
                usages.push(u);
            }
        } else {
            ok = false;
        }
    }
    // Extended key usage.
    let mut ekus = Vec::new();
    if let Some(ev) = t.get("extended_key_usage") {
        let epath = t.sub("extended_key_usage");
        if let Some(items) = p.array(ev, &epath) {
            for (i, item) in items.iter().enumerate() {
                match p.choice(item, &format!("{epath}[{i}]"), EKUS, "an extended key usage", eku) {
                    Some(e) => ekus.push(e),
                    None => ok = false,
                }
            }
        } else {
            ok = false;
        }
    }
    // Subject alternative names.
    let mut sans = Vec::new();
    if let Some(sv) = t.get("san") {
        if let Some(st) = p.table(sv, t.sub("san")) {
            st.known(p, &["email", "dns", "uri"]);
            for (kind, _, value) in &st.entries {
                let kpath = st.sub(kind);
                let make: fn(Template) -> SanTemplate = match *kind {
                    "email" => SanTemplate::Email,
                    "dns" => SanTemplate::Dns,
                    "uri" => SanTemplate::Uri,
                    _ => continue,
                };
                let Some(items) = p.array(value, &kpath) else {
                    ok = false;
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    match p.template(item, &format!("{kpath}[{i}]"), declared) {
                        Some(tpl) => sans.push(make(tpl)),
                        None => ok = false,
                    }
                }
            }
        } else {
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(CertificateTemplate {
        subject,
        validity_days: validity_days?,
        key_usage: usages,
        extended_key_usage: ekus,
        subject_alt_names: sans,
    })
}

fn access_rule(name: &str) -> Option<AccessRule> {
    match name {
        "always" => Some(AccessRule::Always),
        "pin" => Some(AccessRule::Pin),
        "never" => Some(AccessRule::Never),
        _ => None,
    }
}

fn area(name: &str) -> Option<EfArea> {
    match name {
        "public" => Some(EfArea::Public),
        "private" => Some(EfArea::Private),
        _ => None,
    }
}

fn files(p: &mut Parser<'_>, root: &Tab<'_, '_>, declared: &BTreeSet<String>) -> Option<Vec<DfSpec>> {
    let Some(v) = root.get("df") else {
        return Some(Vec::new());
    };
    let items = p.array(v, "df")?;
    let mut out = Vec::new();
    let mut ok = true;
    let mut nodes = 1usize;
    for (i, item) in items.iter().enumerate() {
        let path = format!("df[{i}]");
        let Some(t) = p.table(item, path) else {
            ok = false;
            continue;
        };
        t.known(p, &["fid", "name", "ef"]);
        let fid = t.required(p, "fid").and_then(|v| p.fid(v, &t.sub("fid")));
        if let (Some(f), Some(v)) = (fid, t.get("fid")) {
            if out.iter().any(|d: &DfSpec| d.fid == f) {
                p.err(&v.span(), &t.sub("fid"), format!("DF {f:04X} appears twice"));
                ok = false;
            }
        }
        let name = match t.get("name") {
            Some(v) => match p.string(v, &t.sub("name")) {
                Some(n) if (1..=16).contains(&n.len()) && n.is_ascii() => Some(Some(n.as_bytes().to_vec())),
                Some(n) => {
                    p.err(
                        &v.span(),
                        &t.sub("name"),
                        format!("{n:?} is not a DF name (1 to 16 ASCII bytes)"),
                    );
                    None
                }
                None => None,
            },
            None => Some(None),
        };
        let mut efs = Vec::new();
        if let Some(ev) = t.get("ef") {
            let epath = t.sub("ef");
            match p.array(ev, &epath) {
                Some(efs_in) => {
                    for (j, e) in efs_in.iter().enumerate() {
                        match ef(p, e, format!("{epath}[{j}]"), declared) {
                            Some(spec) => {
                                if efs.iter().any(|x: &EfSpec| x.fid == spec.fid) || Some(spec.fid) == fid {
                                    p.err(
                                        &e.span(),
                                        &format!("{epath}[{j}].fid"),
                                        format!("{:04X} is already used in this DF", spec.fid),
                                    );
                                    ok = false;
                                } else {
                                    efs.push(spec);
                                }
                            }
                            None => ok = false,
                        }
                    }
                }
                None => ok = false,
            }
        }
        nodes += 1 + efs.len();
        let (Some(fid), Some(name)) = (fid, name) else {
            ok = false;
            continue;
        };
        out.push(DfSpec {
            fid,
            name,
            efs,
            line: p.line(t.span.start),
        });
    }
    if nodes > MAX_NODES {
        p.err(
            &v.span(),
            "df",
            format!("{nodes} files, at most {MAX_NODES} fit a card"),
        );
        ok = false;
    }
    ok.then_some(out)
}

fn ef(p: &mut Parser<'_>, v: &Value<'_>, path: String, declared: &BTreeSet<String>) -> Option<EfSpec> {
    let t = p.table(v, path)?;
    t.known(p, &["fid", "area", "read", "update", "size", "content"]);
    let fid = t.required(p, "fid").and_then(|v| p.fid(v, &t.sub("fid")));
    let area = t
        .required(p, "area")
        .and_then(|v| p.choice(v, &t.sub("area"), &["public", "private"], "an area", area));
    let rules = ["always", "pin", "never"];
    let read = t
        .required(p, "read")
        .and_then(|v| p.choice(v, &t.sub("read"), &rules, "an access rule", access_rule));
    let update = t
        .required(p, "update")
        .and_then(|v| p.choice(v, &t.sub("update"), &rules, "an access rule", access_rule));
    let size = t
        .required(p, "size")
        .and_then(|v| p.bounded(v, &t.sub("size"), 1..MAX_EF_SIZE + 1))
        .and_then(|n| u16::try_from(n).ok());
    let content = match t.get("content") {
        Some(cv) => p
            .template(cv, &t.sub("content"), declared)
            .filter(|tpl| match size {
                Some(size) if tpl.literal_len() > usize::from(size) => {
                    p.err(
                        &cv.span(),
                        &t.sub("content"),
                        format!(
                            "is {} bytes before any field is filled in; the EF holds {size}",
                            tpl.literal_len()
                        ),
                    );
                    false
                }
                _ => true,
            }),
        None => Some(Template::default()),
    };
    if let (Some(AccessRule::Pin), Some(EfArea::Public)) = (read, area) {
        let at = t.get("area").map_or(t.span.clone(), |v| v.span());
        p.err(
            &at,
            &t.sub("area"),
            "an EF read only after the PIN belongs in the private area (encrypted in the VSC)",
        );
        return None;
    }
    Some(EfSpec {
        fid: fid?,
        area: area?,
        read: read?,
        update: update?,
        size: size?,
        content: content?,
        line: p.line(t.span.start),
    })
}
