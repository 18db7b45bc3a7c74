//! Printing a VSC for people. Never prints key material or verifiers.

use std::collections::BTreeMap;
use std::path::Path;

use vsc::file::{
    AccessRule, AreaStructure, Df, EfArea, Header, Inspection, KeyOrigin, Node, ObjectId, Origin, SlotInfo,
    State, Vsc,
};

/// Text from the file, with anything a terminal could interpret escaped.
fn safe(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A civil date for Unix seconds (UTC), without a date library.
fn utc(secs: u64) -> String {
    vsc::clock::Utc::from_unix(secs).display()
}

fn state(s: State) -> &'static str {
    match s {
        State::Active => "active",
        State::Disabled => "DISABLED",
    }
}

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Master => "master",
        Origin::Backup => "backup",
        Origin::Temporary => "temporary",
        Origin::Chip => "chip",
    }
}

fn rule(r: AccessRule) -> &'static str {
    match r {
        AccessRule::Always => "always",
        AccessRule::Pin => "PIN",
        AccessRule::Never => "never",
    }
}

fn print_header(path: &Path, version: (u16, u16), h: &Header, slots: &[SlotInfo]) {
    println!("VSC file {} (format {}.{})", path.display(), version.0, version.1);
    println!("  Label:        {}", safe(&h.label));
    println!("  UID:          {}", h.uid);
    println!("  Type:         {}", safe(&h.card_type));
    println!("  State:        {}", state(h.attributes.state));
    println!("  Origin:       {}", origin(h.attributes.origin));
    println!(
        "  Created:      {} ({})",
        utc(h.attributes.created_at),
        h.attributes.created_at
    );
    if h.attributes.chip_serials.is_empty() {
        println!("  Chip serials: none");
    } else {
        let list: Vec<String> = h.attributes.chip_serials.iter().map(hex::encode_upper).collect();
        println!("  Chip serials: {}", list.join(", "));
    }
    for (i, s) in slots.iter().enumerate() {
        let label = if i == 0 {
            "  Key slots:   "
        } else {
            "               "
        };
        println!("{label} {i}: {}", safe(&s.to_string()));
    }
}

fn print_structure(structure: &[AreaStructure]) {
    println!("Structure:");
    for s in structure {
        let what = if s.area == vsc::file::AreaId::Public {
            "bytes"
        } else {
            "bytes encrypted"
        };
        println!(
            "  {:<16} {:>8} {what}, {} object(s)",
            s.area.to_string(),
            s.stored_len,
            s.object_count
        );
    }
}

fn print_df(df: &Df, depth: usize) {
    let pad = "  ".repeat(depth + 1);
    match &df.name {
        Some(n) => println!("{pad}DF {:04X} name {}", df.fid, hex::encode_upper(n)),
        None => println!("{pad}DF {:04X}", df.fid),
    }
    for c in &df.children {
        match c {
            Node::Df(d) => print_df(d, depth + 1),
            Node::Ef(e) => println!(
                "{pad}  EF {:04X}  {} area, read {}, update {}, {} bytes",
                e.fid,
                match e.area {
                    EfArea::Public => "public",
                    EfArea::Private => "private",
                },
                rule(e.read),
                rule(e.update),
                e.size
            ),
        }
    }
}

fn printable(v: &[u8]) -> String {
    v.iter()
        .map(|b| {
            if (0x20..0x7F).contains(b) {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect()
}

fn print_objects(title: &str, objects: &BTreeMap<ObjectId, Vec<u8>>) {
    println!("{title}");
    if objects.is_empty() {
        println!("  (empty)");
    }
    for (id, v) in objects {
        println!("  {}  ({} bytes)", safe(&id.to_string()), v.len());
        for chunk in v.chunks(32) {
            println!("    {:<64}  {}", hex::encode_upper(chunk), printable(chunk));
        }
    }
}

pub(crate) fn inspected(path: &Path, seen: &Inspection) {
    print_header(path, seen.format_version, &seen.header, &seen.slots);
    print_structure(&seen.structure);
    println!("Hierarchy:");
    print_df(&seen.header.hierarchy, 0);
    print_objects(
        "Public area (integrity checked, NOT authenticated: no key given):",
        &seen.public_area_unauthenticated,
    );
}

pub(crate) fn opened(path: &Path, seen: &Inspection, card: &Vsc, private: bool) {
    print_header(path, card.format_version(), card.header(), &card.protectors());
    print_structure(&seen.structure);
    println!("Hierarchy:");
    print_df(&card.header().hierarchy, 0);
    print_objects("Public area (authenticated):", card.public_area());
    if !private {
        return;
    }
    print_objects("Private area:", card.private_area());
    println!("Secret key area (material not shown):");
    let mut any = false;
    for k in card.secret_keys() {
        any = true;
        let a = &k.attributes;
        println!(
            "  {}  {}  {}, PIN policy {}, touch policy {}",
            safe(&k.id.to_string()),
            k.algorithm,
            match a.origin {
                KeyOrigin::GeneratedOnMaster => "generated on the master VSC",
                KeyOrigin::Imported => "imported",
                KeyOrigin::GeneratedOnCard => "generated on the card",
            },
            a.pin_policy,
            a.touch_policy
        );
    }
    if !any {
        println!("  (empty)");
    }
    println!("Password area (verifiers not shown):");
    let mut any = false;
    for p in card.passwords() {
        any = true;
        println!(
            "  {}  {} of {} tries left{}, length {} to {}",
            p.id,
            p.retries_left(),
            p.max_retries(),
            if p.is_blocked() { " (BLOCKED)" } else { "" },
            p.min_len(),
            p.max_len()
        );
    }
    if !any {
        println!("  (empty)");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_102_444_800), "2100-01-01 00:00:00 UTC");
    }

    #[test]
    fn escapes() {
        assert_eq!(safe("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(printable(b"ab\x00\xff"), "ab..");
    }
}
