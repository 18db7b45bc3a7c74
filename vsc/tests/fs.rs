//! The data-object file system of the software card, driven in process:
//! SELECT by FID and path, READ/UPDATE BINARY with the access rules of both
//! areas, CREATE FILE, DELETE FILE, VERIFY, persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod isd_support;

use isd_support::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::blank::BlankCard;
use vsc::card::fs::fcp::{create_df_data, create_ef_data};
use vsc::card::isd::put_key::put_key_command;
use vsc::card::{LifeCycle, SoftCard};
use vsc::codec::{CommandApdu, StatusWord};
use vsc::file::{
    AccessRule, Argon2Params, DataObject, Df, Ef, EfArea, Node, ObjectId, Protector, Unlock, Vsc,
};
use vsc::scp03::{HostSession, SecurityLevel, StaticKeys};
use vsc::secret::{AesKey, AesKeyLen, SecretBytes};
use vsc::transport::{CardTransport, InProcess, ResetKind};

use AccessRule::{Always, Never, Pin};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn create_ef(fid: u16, size: u16, area: EfArea, read: AccessRule, update: AccessRule) -> CommandApdu {
    CommandApdu::new(0x00, 0xE0, 0, 0)
        .with_data(create_ef_data(fid, size, area, read, update))
        .unwrap()
}

fn create_df(fid: u16, name: Option<&[u8]>) -> CommandApdu {
    CommandApdu::new(0x00, 0xE0, 0, 0)
        .with_data(create_df_data(fid, name))
        .unwrap()
}

fn update(offset: u16, data: &[u8]) -> CommandApdu {
    let [p1, p2] = offset.to_be_bytes();
    CommandApdu::new(0x00, 0xD6, p1, p2)
        .with_data(data.to_vec())
        .unwrap()
}

fn read(offset: u16, ne: usize) -> CommandApdu {
    let [p1, p2] = offset.to_be_bytes();
    CommandApdu::new(0x00, 0xB0, p1, p2).with_ne(ne).unwrap()
}

fn select_path(path: &[u16]) -> CommandApdu {
    let data: Vec<u8> = path.iter().flat_map(|f| f.to_be_bytes()).collect();
    CommandApdu::new(0x00, 0xA4, 0x08, 0x04)
        .with_data(data)
        .unwrap()
        .with_ne(256)
        .unwrap()
}

const PIN: &str = "0020008008313233343536FFFF";

fn mf_fcp() -> Vec<u8> {
    h("620A 820138 83023F00 8A0105")
}

// ------------------------------------------------------------------ SELECT

#[test]
fn select_the_mf() {
    let mut t = card(200);
    for apdu in ["00A40000023F00", "00A4000000", "00A40004023F0000", "00A4000800"] {
        let r = send(&mut t, apdu);
        assert_eq!((r.sw, r.data), (StatusWord::Success, mf_fcp()), "{apdu}");
    }
    let r = send(&mut t, "00A4000C023F00");
    assert_eq!((r.sw, r.data.len()), (StatusWord::Success, 0));
    assert_eq!(send(&mut t, "00A40001023F00").sw, StatusWord::IncorrectP1P2);
    assert_eq!(send(&mut t, "00A40010023F00").sw, StatusWord::IncorrectP1P2);
    assert_eq!(send(&mut t, "00A4000002500000").sw, StatusWord::FileNotFound);
    assert_eq!(send(&mut t, "00A40000013F").sw, StatusWord::WrongLength);
    assert_eq!(send(&mut t, "00A40000033F0000").sw, StatusWord::WrongLength);
    // The parent of the MF.
    assert_eq!(send(&mut t, "00A4030000").sw, StatusWord::FileNotFound);
    // A foreign P1 for SELECT.
    assert_eq!(send(&mut t, "00A4050000").sw, StatusWord::IncorrectP1P2);
}

/// A card with `3F00/5015` (DF "CSMITH") holding EFs `4401` (public, read
/// always, update never, 64 bytes) and `4402` (private, read PIN, update
/// PIN, 16 bytes), and `3F00/2F01` (public, always/always, 8 bytes),
/// created through an SCP03 session.
fn card_with_files(serial: u32) -> (Card, HostSession) {
    let mut t = card(serial);
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    let mut s = open(&mut t, SecurityLevel::All);
    let ok = |t: &mut Card, s: &mut HostSession, c: CommandApdu| {
        let r = secure(t, s, &c);
        assert_eq!(r.sw, StatusWord::Success, "{c:?}");
    };
    ok(
        &mut t,
        &mut s,
        create_ef(0x2F01, 8, EfArea::Public, Always, Always),
    );
    // CREATE FILE selected the new EF; the current DF is still the MF.
    ok(&mut t, &mut s, create_df(0x5015, Some(b"CSMITH")));
    ok(
        &mut t,
        &mut s,
        create_ef(0x4401, 64, EfArea::Public, Always, Never),
    );
    ok(&mut t, &mut s, update(0, b"1 Card Street"));
    ok(&mut t, &mut s, create_ef(0x4402, 16, EfArea::Private, Pin, Pin));
    ok(&mut t, &mut s, update(0, b"DE00123456"));
    (t, s)
}

#[test]
fn create_file_builds_the_hierarchy_in_the_vsc() {
    let (t, _s) = card_with_files(201);
    let vsc = t.card().vsc();
    let mf = &vsc.header().hierarchy;
    assert_eq!(mf.children.len(), 2);
    let Node::Df(df) = &mf.children[1] else {
        panic!("not a DF")
    };
    assert_eq!((df.fid, df.name.as_deref()), (0x5015, Some(&b"CSMITH"[..])));
    assert_eq!(
        mf.find_ef(&[0x3F00, 0x5015, 0x4402]).unwrap(),
        &Ef {
            fid: 0x4402,
            area: EfArea::Private,
            read: Pin,
            update: Pin,
            size: 16
        }
    );
    let address = ObjectId::File(vec![0x3F00, 0x5015, 0x4401]);
    let account = ObjectId::File(vec![0x3F00, 0x5015, 0x4402]);
    assert_eq!(vsc.public_area().get(&address).unwrap(), b"1 Card Street");
    assert_eq!(vsc.private_area().get(&account).unwrap(), b"DE00123456");
    assert!(vsc.public_area().get(&account).is_none());
}

#[test]
fn select_by_fid_and_path_with_fcp() {
    let (mut t, _s) = card_with_files(202);
    t.reset(ResetKind::Warm).unwrap();
    let address_fcp = h("621A 8002000D 81020040 820101 83024401 850103 8A0105 8C0303FF00");
    let df_fcp = h("6212 820138 83025015 8406 43534D495448 8A0105");
    // P1 00: from the MF to a child DF, then a child EF, the parent, a
    // sibling of the current DF.
    assert_eq!(send(&mut t, "00A40000023F00").data, mf_fcp());
    assert_eq!(send(&mut t, "00A4000002501500").data, df_fcp);
    assert_eq!(send(&mut t, "00A4000402440100").data, address_fcp);
    assert_eq!(send(&mut t, "00A4000002501500").data, df_fcp);
    assert_eq!(send(&mut t, "00A40000023F0000").data, mf_fcp());
    let private_fcp = h("621A 8002000A 81020010 820101 83024402 850104 8A0105 8C03031010");
    assert_eq!(plain(&mut t, &select_path(&[0x5015, 0x4402])).data, private_fcp);
    // Sibling of the current DF through P1 00: from 5015, 2F01 is a child of
    // the parent.
    assert_eq!(send(&mut t, "00A4000002501500").sw, StatusWord::Success);
    assert_eq!(send(&mut t, "00A40000022F0100").sw, StatusWord::Success);
    // P1 01 child DF only, 02 child EF only.
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    assert_eq!(send(&mut t, "00A4010002501500").data, df_fcp);
    assert_eq!(send(&mut t, "00A4010002440100").sw, StatusWord::FileNotFound);
    assert_eq!(send(&mut t, "00A4020002440100").data, address_fcp);
    assert_eq!(send(&mut t, "00A4020002501500").sw, StatusWord::FileNotFound);
    // P1 03: the parent DF.
    assert_eq!(send(&mut t, "00A4030000").data, mf_fcp());
    assert_eq!(send(&mut t, "00A4030002501500").sw, StatusWord::WrongLength);
    // P1 09: a path from the current DF.
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    assert_eq!(send(&mut t, "00A409000450154401 00").data, address_fcp);
    assert_eq!(send(&mut t, "00A4090002440100").data, address_fcp);
    // Not found, bad paths.
    // (The last: from 5015, the current DF, there is no 5015.)
    for apdu in [
        "00A40800045015440900",
        "00A40800044401501500",
        "00A4080002999900",
        "00A409000450154401",
    ] {
        assert_eq!(send(&mut t, apdu).sw, StatusWord::FileNotFound, "{apdu}");
    }
    assert_eq!(send(&mut t, "00A4080003501544").sw, StatusWord::WrongLength);
    assert_eq!(send(&mut t, "00A4080000").sw, StatusWord::WrongLength);
    // A failed SELECT keeps the current file.
    assert_eq!(send(&mut t, "00B0000002").data, b"1 ");
}

// ------------------------------------------------------ READ / UPDATE BINARY

#[test]
fn read_and_update_binary_offsets_and_lengths() {
    let (mut t, _s) = card_with_files(203);
    t.reset(ResetKind::Warm).unwrap();
    assert_eq!(send(&mut t, "00A4000C023F00").sw, StatusWord::Success);
    // No EF selected yet.
    assert_eq!(send(&mut t, "00B0000004").sw, StatusWord::CommandNotAllowed);
    assert_eq!(send(&mut t, "00D6000001AA").sw, StatusWord::CommandNotAllowed);
    assert_eq!(send(&mut t, "00A40000022F01").sw, StatusWord::Success);
    // An empty EF: nothing to read.
    let r = send(&mut t, "00B0000000");
    assert_eq!((r.sw, r.data.len()), (StatusWord::EndOfData, 0));
    assert_eq!(plain(&mut t, &update(0, b"ABCD")).sw, StatusWord::Success);
    assert_eq!(plain(&mut t, &update(4, b"EFGH")).sw, StatusWord::Success);
    // Overwrite in the middle keeps the tail.
    assert_eq!(plain(&mut t, &update(2, b"cd")).sw, StatusWord::Success);
    assert_eq!(send(&mut t, "00B0000000").data, b"ABcdEFGH");
    let r = plain(&mut t, &read(2, 3));
    assert_eq!((r.sw, r.data), (StatusWord::Success, b"cdE".to_vec()));
    // Fewer bytes than Le: 6282 with what there is.
    let r = plain(&mut t, &read(6, 5));
    assert_eq!((r.sw, r.data), (StatusWord::EndOfData, b"GH".to_vec()));
    // At the end, and beyond it.
    let r = plain(&mut t, &read(8, 1));
    assert_eq!((r.sw, r.data.len()), (StatusWord::EndOfData, 0));
    assert_eq!(plain(&mut t, &read(9, 1)).sw, StatusWord::WrongP1P2);
    // Writing past the allocated 8 bytes; leaving a gap; no data.
    assert_eq!(plain(&mut t, &update(6, b"XYZ")).sw, StatusWord::NotEnoughMemory);
    assert_eq!(plain(&mut t, &update(9, b"X")).sw, StatusWord::WrongP1P2);
    assert_eq!(send(&mut t, "00D60000").sw, StatusWord::WrongLength);
    assert_eq!(send(&mut t, "00B00000 01 AA").sw, StatusWord::WrongLength);
    // Short EF identifiers: this card has none.
    assert_eq!(send(&mut t, "00B0810000").sw, StatusWord::FileNotFound);
    assert_eq!(send(&mut t, "00D6810001AA").sw, StatusWord::FileNotFound);
    assert_eq!(send(&mut t, "00B0000000").data, b"ABcdEFGH");
    // Selecting a DF leaves no current EF.
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    assert_eq!(send(&mut t, "00B0000000").sw, StatusWord::CommandNotAllowed);
    // Other instructions and classes.
    assert_eq!(send(&mut t, "00CA9F7F00").sw, StatusWord::InstructionNotSupported);
    assert_eq!(send(&mut t, "80B0000000").sw, StatusWord::ClassNotSupported);
}

#[test]
fn long_files_are_read_in_parts() {
    let mut t = card(204);
    let mut s = open(&mut t, SecurityLevel::All);
    assert_eq!(ssend(&mut t, &mut s, "00A4000C023F00").sw, StatusWord::Success);
    let content: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    assert_eq!(
        secure(
            &mut t,
            &mut s,
            &create_ef(0x3000, 1000, EfArea::Private, Always, Always)
        )
        .sw,
        StatusWord::Success
    );
    for (i, chunk) in content.chunks(200).enumerate() {
        let r = secure(&mut t, &mut s, &update((i * 200) as u16, chunk));
        assert_eq!(r.sw, StatusWord::Success);
    }
    t.reset(ResetKind::Warm).unwrap();
    assert_eq!(send(&mut t, "00A40000023000").sw, StatusWord::Success);
    // Le 00: up to 256 bytes.
    assert_eq!(plain(&mut t, &read(0, 256)).data, content[..256]);
    assert_eq!(plain(&mut t, &read(512, 256)).data, content[512..]);
    // Extended Le 0000: all of it.
    let r = plain(&mut t, &read(0, 65_536));
    assert_eq!((r.sw, r.data), (StatusWord::Success, content));
}

// ------------------------------------------------------------------ access rules

/// Every rule in both areas: the cardholder (no session) is held to the
/// rules; the PIN opens `pin`; `never` stays closed.
#[test]
fn access_rules_in_both_areas() {
    let rules = [Always, Pin, Never];
    let mut t = card(205);
    let mut s = open(&mut t, SecurityLevel::All);
    assert_eq!(ssend(&mut t, &mut s, "00A4000C023F00").sw, StatusWord::Success);
    let mut fid = 0x1000u16;
    let mut files = Vec::new();
    for area in [EfArea::Public, EfArea::Private] {
        for read_rule in rules {
            for update_rule in rules {
                fid += 1;
                let c = create_ef(fid, 32, area, read_rule, update_rule);
                assert_eq!(secure(&mut t, &mut s, &c).sw, StatusWord::Success);
                // The issuer personalizes any EF before the card is SECURED.
                assert_eq!(
                    secure(&mut t, &mut s, &update(0, b"issuer")).sw,
                    StatusWord::Success
                );
                files.push((fid, area, read_rule, update_rule));
            }
        }
    }
    let vsc = t.card().vsc();
    for (fid, area, _, _) in &files {
        let id = ObjectId::File(vec![0x3F00, *fid]);
        let (here, there) = match area {
            EfArea::Public => (vsc.public_area(), vsc.private_area()),
            EfArea::Private => (vsc.private_area(), vsc.public_area()),
        };
        assert_eq!(here.get(&id).unwrap(), b"issuer");
        assert!(there.get(&id).is_none());
    }
    t.reset(ResetKind::Warm).unwrap();
    let check = |t: &mut Card, pin_verified: bool| {
        for (fid, area, read_rule, update_rule) in &files {
            let [a, b] = fid.to_be_bytes();
            let sel = CommandApdu::new(0x00, 0xA4, 0x00, 0x0C)
                .with_data(vec![a, b])
                .unwrap();
            assert_eq!(plain(t, &sel).sw, StatusWord::Success);
            let may = |rule: &AccessRule| match rule {
                Always => true,
                Pin => pin_verified,
                Never => false,
            };
            let what =
                format!("EF {fid:04X} {area:?} read {read_rule:?} update {update_rule:?} PIN {pin_verified}");
            let r = plain(t, &read(0, 256));
            if may(read_rule) {
                assert_eq!((r.sw, r.data.len()), (StatusWord::Success, 6), "{what}");
            } else {
                assert_eq!(
                    (r.sw, r.data.len()),
                    (StatusWord::SecurityStatusNotSatisfied, 0),
                    "{what}"
                );
            }
            let w = plain(t, &update(0, b"holder"));
            let want = if may(update_rule) {
                StatusWord::Success
            } else {
                StatusWord::SecurityStatusNotSatisfied
            };
            assert_eq!(w.sw, want, "{what}");
            if may(update_rule) {
                // Put the issuer's content back for the next round.
                assert_eq!(plain(t, &update(0, b"issuer")).sw, StatusWord::Success);
            }
        }
    };
    check(&mut t, false);
    assert_eq!(send(&mut t, PIN).sw, StatusWord::Success);
    check(&mut t, true);
    // Forgetting the PIN (P1 FF) closes `pin` again; so does a reset.
    assert_eq!(send(&mut t, "0020FF80").sw, StatusWord::Success);
    check(&mut t, false);
    assert_eq!(send(&mut t, PIN).sw, StatusWord::Success);
    t.reset(ResetKind::Warm).unwrap();
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    check(&mut t, false);
}

fn secure_the_card(t: &mut Card) -> StaticKeys {
    let mut s = open(t, SecurityLevel::All);
    assert_eq!(ssend(t, &mut s, "00A4040000").sw, StatusWord::Success);
    let mut rng = StdRng::seed_from_u64(5);
    let new = StaticKeys::new(
        AesKey::random(&mut rng, AesKeyLen::Aes128),
        AesKey::random(&mut rng, AesKeyLen::Aes128),
        AesKey::random(&mut rng, AesKeyLen::Aes128),
    )
    .unwrap();
    let pk = put_key_command(None, 0x30, test_keys().dek(), &new);
    assert_eq!(secure(t, &mut s, &pk).sw, StatusWord::Success);
    assert_eq!(ssend(t, &mut s, "80F0800F00").sw, StatusWord::Success);
    t.reset(ResetKind::Warm).unwrap();
    new
}

#[test]
fn once_secured_the_rules_bind_the_issuer_too() {
    let (mut t, _s) = card_with_files(206);
    let new = secure_the_card(&mut t);
    assert_eq!(t.card().life_cycle(), LifeCycle::Secured);
    assert_eq!(send(&mut t, "00A4000C023F00").sw, StatusWord::Success);
    let mut s = open_with(&mut t, 0x30, &new, SecurityLevel::All, vsc::card::ISD_AID).unwrap();
    let address = select_path(&[0x5015, 0x4401]);
    assert_eq!(secure(&mut t, &mut s, &address).sw, StatusWord::Success);
    assert_eq!(
        secure(&mut t, &mut s, &update(0, b"2")).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(secure(&mut t, &mut s, &read(0, 256)).data, b"1 Card Street");
    // PIN-protected data needs the PIN, for the issuer as for anyone.
    let account = select_path(&[0x5015, 0x4402]);
    assert_eq!(secure(&mut t, &mut s, &account).sw, StatusWord::Success);
    assert_eq!(
        secure(&mut t, &mut s, &read(0, 256)).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(ssend(&mut t, &mut s, PIN).sw, StatusWord::Success);
    assert_eq!(secure(&mut t, &mut s, &read(0, 256)).data, b"DE00123456");
    // Files may still be created in SECURED.
    assert_eq!(
        secure(
            &mut t,
            &mut s,
            &create_ef(0x4403, 4, EfArea::Public, Always, Always)
        )
        .sw,
        StatusWord::Success
    );
}

#[test]
fn verify_in_the_file_system() {
    let mut t = card(207);
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    assert_eq!(
        send(&mut t, "0020008000").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
    assert_eq!(
        send(&mut t, "0020008008393939393939FFFF").sw,
        StatusWord::VerificationFailed { retries: 2 }
    );
    assert_eq!(send(&mut t, PIN).sw, StatusWord::Success);
    assert_eq!(send(&mut t, "0020008000").sw, StatusWord::Success);
    assert_eq!(
        send(&mut t, "0020008108313233343536FFFF").sw,
        StatusWord::ReferencedDataNotFound
    );
    assert_eq!(send(&mut t, "0020010000").sw, StatusWord::ReferencedDataNotFound);
    assert_eq!(send(&mut t, "00200180").sw, StatusWord::IncorrectP1P2);
    assert_eq!(send(&mut t, "0020FF8001AA").sw, StatusWord::WrongLength);
    assert_eq!(send(&mut t, "0020FF80").sw, StatusWord::Success);
    assert_eq!(
        send(&mut t, "0020008000").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
}

// ------------------------------------------------------------ CREATE / DELETE

#[test]
fn create_file_refusals() {
    let mut t = card(208);
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    // Without the issuer's authority.
    let ef = create_ef(0x2F01, 8, EfArea::Public, Always, Never);
    assert_eq!(plain(&mut t, &ef).sw, StatusWord::SecurityStatusNotSatisfied);
    assert_eq!(
        plain(&mut t, &create_df(0x5015, None)).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert!(t.card().vsc().header().hierarchy.children.is_empty());
    let mut s = open(&mut t, SecurityLevel::CMac);
    assert_eq!(secure(&mut t, &mut s, &ef).sw, StatusWord::Success);
    // The FID exists (an EF is current, so the DF is still the MF).
    assert_eq!(secure(&mut t, &mut s, &ef).sw, StatusWord::FileAlreadyExists);
    assert_eq!(
        secure(&mut t, &mut s, &create_df(0x2F01, None)).sw,
        StatusWord::FileAlreadyExists
    );
    let p1p2 = CommandApdu::new(0x00, 0xE0, 0x00, 0x01)
        .with_data(create_df_data(0x5015, None))
        .unwrap();
    assert_eq!(secure(&mut t, &mut s, &p1p2).sw, StatusWord::IncorrectP1P2);
    assert_eq!(
        ssend(&mut t, &mut s, "00E00000 05 6203830150").sw,
        StatusWord::IncorrectData
    );
    assert_eq!(
        ssend(
            &mut t,
            &mut s,
            "00E00000 15 6213 820101 83025001 80028000 850103 8C0303FF00"
        )
        .sw,
        StatusWord::NotEnoughMemory
    );
    // As deep as the VSC allows: the MF and 7 DFs below it; no EF in the
    // deepest DF (an EF path has at most 8 FIDs).
    for fid in 0x6001..=0x6007u16 {
        assert_eq!(
            secure(&mut t, &mut s, &create_df(fid, None)).sw,
            StatusWord::Success
        );
    }
    assert_eq!(
        secure(&mut t, &mut s, &create_df(0x6008, None)).sw,
        StatusWord::NotEnoughMemory
    );
    assert_eq!(
        secure(
            &mut t,
            &mut s,
            &create_ef(0x0001, 1, EfArea::Public, Always, Always)
        )
        .sw,
        StatusWord::NotEnoughMemory
    );
    assert_eq!(ssend(&mut t, &mut s, "00A4030000").sw, StatusWord::Success);
    assert_eq!(
        secure(
            &mut t,
            &mut s,
            &create_ef(0x0001, 1, EfArea::Public, Always, Always)
        )
        .sw,
        StatusWord::Success
    );
}

#[test]
fn delete_file() {
    let (mut t, mut s) = card_with_files(209);
    // Without the issuer's authority.
    let mut t2 = card(210);
    assert_eq!(send(&mut t2, "00A40000023F00").sw, StatusWord::Success);
    assert_eq!(
        send(&mut t2, "00E40000022F01").sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    // The current EF is 4402 in 5015; delete 4401 by FID.
    assert_eq!(ssend(&mut t, &mut s, "00E4000002 4401").sw, StatusWord::Success);
    let address = ObjectId::File(vec![0x3F00, 0x5015, 0x4401]);
    assert!(t.card().vsc().public_area().get(&address).is_none());
    assert_eq!(
        ssend(&mut t, &mut s, "00E4000002 4401").sw,
        StatusWord::FileNotFound
    );
    assert_eq!(
        ssend(&mut t, &mut s, "00E4000102 4402").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(ssend(&mut t, &mut s, "00E4000001 44").sw, StatusWord::WrongLength);
    // Without data: the current EF (4402), then the current DF (5015).
    assert_eq!(ssend(&mut t, &mut s, "00E40000").sw, StatusWord::Success);
    let account = ObjectId::File(vec![0x3F00, 0x5015, 0x4402]);
    assert!(t.card().vsc().private_area().get(&account).is_none());
    assert_eq!(
        ssend(&mut t, &mut s, "00B0000000").sw,
        StatusWord::CommandNotAllowed
    );
    assert_eq!(ssend(&mut t, &mut s, "00E40000").sw, StatusWord::Success);
    // Back at the MF, which cannot be deleted.
    assert_eq!(ssend(&mut t, &mut s, "00A4000C022F01").sw, StatusWord::Success);
    assert_eq!(ssend(&mut t, &mut s, "00A4000C023F00").sw, StatusWord::Success);
    assert_eq!(
        ssend(&mut t, &mut s, "00E40000").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    let mf = &t.card().vsc().header().hierarchy;
    assert_eq!(mf.children.iter().map(Node::fid).collect::<Vec<_>>(), [0x2F01]);
    // A DF with content goes with all of it.
    assert_eq!(
        secure(&mut t, &mut s, &create_df(0x7000, None)).sw,
        StatusWord::Success
    );
    assert_eq!(
        secure(
            &mut t,
            &mut s,
            &create_ef(0x7001, 4, EfArea::Private, Always, Always)
        )
        .sw,
        StatusWord::Success
    );
    assert_eq!(
        secure(&mut t, &mut s, &update(0, b"gone")).sw,
        StatusWord::Success
    );
    assert_eq!(ssend(&mut t, &mut s, "00A4000C023F00").sw, StatusWord::Success);
    assert_eq!(ssend(&mut t, &mut s, "00E4000002 7000").sw, StatusWord::Success);
    assert!(t.card().vsc().private_area().is_empty());
    assert_eq!(
        ssend(&mut t, &mut s, "00A4080402700100").sw,
        StatusWord::FileNotFound
    );
}

// ------------------------------------------------------------------ persistence

#[test]
fn a_created_ef_survives_a_save_and_reload_of_a_file_backed_card() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.vsc");
    let pw = SecretBytes::from_slice(b"stock password");
    let protector = Protector::Password {
        password: pw.clone(),
        params: Argon2Params::new(8 * 1024, 1, 1).unwrap(),
    };
    let vsc = BlankCard::new(211)
        .unwrap()
        .build(&protector, &mut StdRng::seed_from_u64(2))
        .unwrap();
    vsc.save_new(&path, &mut StdRng::seed_from_u64(3)).unwrap();
    let mut t = InProcess::insert(SoftCard::open_file(&path, Unlock::Password(pw.clone())).unwrap());
    assert_eq!(send(&mut t, "00A40000023F00").sw, StatusWord::Success);
    let mut s = open(&mut t, SecurityLevel::All);
    for c in [
        create_df(0x5015, None),
        create_ef(0x4402, 16, EfArea::Private, Pin, Never),
        update(0, b"DE00123456"),
    ] {
        assert_eq!(secure(&mut t, &mut s, &c).sw, StatusWord::Success);
    }
    drop(t.remove());
    let saved = Vsc::load(&path, &Unlock::Password(pw.clone())).unwrap();
    let ef = saved
        .header()
        .hierarchy
        .find_ef(&[0x3F00, 0x5015, 0x4402])
        .unwrap();
    assert_eq!(
        (ef.area, ef.read, ef.update, ef.size),
        (EfArea::Private, Pin, Never, 16)
    );
    assert_eq!(
        saved
            .private_area()
            .get(&ObjectId::File(vec![0x3F00, 0x5015, 0x4402]))
            .unwrap(),
        b"DE00123456"
    );
    // A new card over the same file reads it, after the PIN.
    let mut t = InProcess::insert(SoftCard::open_file(&path, Unlock::Password(pw)).unwrap());
    assert_eq!(
        plain(&mut t, &select_path(&[0x5015, 0x4402])).sw,
        StatusWord::Success
    );
    assert_eq!(
        plain(&mut t, &read(0, 256)).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(send(&mut t, PIN).sw, StatusWord::Success);
    assert_eq!(plain(&mut t, &read(0, 256)).data, b"DE00123456");
}

/// The files the keyserver will write into a master VSC directly: an address
/// (public, read always, update never) and an account number (private, read
/// after PIN, update never).
#[test]
fn keyserver_written_address_and_account_number() {
    let mut vsc = blank(212);
    let mut mf = Df::master_file();
    mf.children.push(Node::Df(Df {
        fid: 0x5015,
        name: None,
        children: vec![
            Node::Ef(Ef {
                fid: 0x4401,
                area: EfArea::Public,
                read: Always,
                update: Never,
                size: 128,
            }),
            Node::Ef(Ef {
                fid: 0x4402,
                area: EfArea::Private,
                read: Pin,
                update: Never,
                size: 34,
            }),
        ],
    }));
    vsc.set_hierarchy(mf).unwrap();
    vsc.put_public(DataObject::new(
        ObjectId::File(vec![0x3F00, 0x5015, 0x4401]),
        b"1 Card Street".to_vec(),
    ))
    .unwrap();
    vsc.put_private(DataObject::new(
        ObjectId::File(vec![0x3F00, 0x5015, 0x4402]),
        b"DE89370400440532013000".to_vec(),
    ))
    .unwrap();
    let mut t = InProcess::insert(SoftCard::with_seed(vsc, 1).unwrap());
    assert_eq!(
        plain(&mut t, &select_path(&[0x5015, 0x4401])).sw,
        StatusWord::Success
    );
    assert_eq!(plain(&mut t, &read(0, 256)).data, b"1 Card Street");
    assert_eq!(
        plain(&mut t, &update(0, b"X")).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(
        plain(&mut t, &select_path(&[0x5015, 0x4402])).sw,
        StatusWord::Success
    );
    assert_eq!(
        plain(&mut t, &read(0, 256)).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(send(&mut t, PIN).sw, StatusWord::Success);
    assert_eq!(plain(&mut t, &read(0, 256)).data, b"DE89370400440532013000");
    assert_eq!(
        plain(&mut t, &update(0, b"X")).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
}
