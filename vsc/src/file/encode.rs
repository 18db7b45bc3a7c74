//! The body's BER-TLV: every tag of the format and the encoding and decoding
//! of each section and area content. `FORMAT.md` describes the same bytes.

use std::collections::BTreeMap;

use crate::codec::{Tag, Tlv, TlvRef};
use crate::secret::SecretBytes;
use crate::tag;
use zeroize::Zeroizing;

use super::error::{AreaId, ContentError};
use super::model::{
    AccessRule, Attributes, DataObject, Df, Ef, EfArea, Header, KeyAlgorithm, KeyAttributes, KeyOrigin,
    KeyRef, Node, ObjectId, Origin, PasswordEntry, PasswordRef, PinPolicy, SecretKeyEntry, State,
    TouchPolicy, Uid, Verifier, MAX_PATH_LEN,
};
use super::slots::{Argon2Params, KeySlot, SlotKind, ARGON2ID, ARGON2_VERSION, SALT_LEN, WRAPPED_LEN};
use super::tlvio::{cons, fixed, prim, seq, text_of, u16_of, u32_of, u64_of, u8_of, Fields};

/// Top-level objects of the body, in their required order.
pub(crate) mod body {
    use super::*;
    pub(crate) const HEADER: Tag = tag!(0xE1);
    pub(crate) const KEY_SLOTS: Tag = tag!(0xE2);
    pub(crate) const PUBLIC: Tag = tag!(0xE3);
    pub(crate) const PRIVATE: Tag = tag!(0xE4);
    pub(crate) const SECRET_KEYS: Tag = tag!(0xE5);
    pub(crate) const PASSWORDS: Tag = tag!(0xE6);
}

mod header {
    use super::*;
    pub(super) const UID: Tag = tag!(0xC1);
    pub(super) const LABEL: Tag = tag!(0xC2);
    pub(super) const TYPE: Tag = tag!(0xC3);
    pub(super) const ATTRIBUTES: Tag = tag!(0xE4);
    pub(super) const STRUCTURE: Tag = tag!(0xE5);
    pub(super) const HIERARCHY: Tag = tag!(0xE6);
    pub(super) const KNOWN: &[Tag] = &[UID, LABEL, TYPE, ATTRIBUTES, STRUCTURE, HIERARCHY];

    pub(super) const STATE: Tag = tag!(0xC1);
    pub(super) const ORIGIN: Tag = tag!(0xC2);
    pub(super) const CREATED: Tag = tag!(0xC3);
    pub(super) const SERIALS: Tag = tag!(0xE4);
    pub(super) const ATTR_KNOWN: &[Tag] = &[STATE, ORIGIN, CREATED, SERIALS];
    pub(super) const SERIAL: Tag = tag!(0xC1);
    pub(super) const SERIAL_KNOWN: &[Tag] = &[SERIAL];

    pub(super) const AREA: Tag = tag!(0xE1);
    pub(super) const STRUCT_KNOWN: &[Tag] = &[AREA];
    pub(super) const AREA_ID: Tag = tag!(0xC1);
    pub(super) const AREA_LEN: Tag = tag!(0xC2);
    pub(super) const AREA_COUNT: Tag = tag!(0xC3);
    pub(super) const AREA_KNOWN: &[Tag] = &[AREA_ID, AREA_LEN, AREA_COUNT];

    pub(super) const DF: Tag = tag!(0xE1);
    pub(super) const EF: Tag = tag!(0xE2);
    pub(super) const HIER_KNOWN: &[Tag] = &[DF];
    pub(super) const FID: Tag = tag!(0xC1);
    pub(super) const DF_NAME: Tag = tag!(0xC2);
    pub(super) const DF_KNOWN: &[Tag] = &[FID, DF_NAME, DF, EF];
    pub(super) const EF_AREA: Tag = tag!(0xC2);
    pub(super) const EF_READ: Tag = tag!(0xC3);
    pub(super) const EF_UPDATE: Tag = tag!(0xC4);
    pub(super) const EF_SIZE: Tag = tag!(0xC5);
    pub(super) const EF_KNOWN: &[Tag] = &[FID, EF_AREA, EF_READ, EF_UPDATE, EF_SIZE];
}

mod slot {
    use super::*;
    pub(super) const SLOT: Tag = tag!(0xE1);
    pub(super) const LIST_KNOWN: &[Tag] = &[SLOT];
    pub(super) const KIND: Tag = tag!(0xC1);
    pub(super) const ARGON2: Tag = tag!(0xE2);
    pub(super) const KEY_ID: Tag = tag!(0xC3);
    pub(super) const NONCE: Tag = tag!(0xC4);
    pub(super) const WRAPPED: Tag = tag!(0xC5);
    pub(super) const KNOWN: &[Tag] = &[KIND, ARGON2, KEY_ID, NONCE, WRAPPED];
    pub(super) const KIND_PASSWORD: u8 = 0x01;
    pub(super) const KIND_KEK: u8 = 0x02;

    pub(super) const VARIANT: Tag = tag!(0xC1);
    pub(super) const VERSION: Tag = tag!(0xC2);
    pub(super) const M: Tag = tag!(0xC3);
    pub(super) const T: Tag = tag!(0xC4);
    pub(super) const P: Tag = tag!(0xC5);
    pub(super) const SALT: Tag = tag!(0xC6);
    pub(super) const ARGON2_KNOWN: &[Tag] = &[VARIANT, VERSION, M, T, P, SALT];
}

mod object {
    use super::*;
    pub(super) const OBJECT: Tag = tag!(0xE1);
    pub(super) const LIST_KNOWN: &[Tag] = &[OBJECT];
    pub(super) const PIV: Tag = tag!(0xC1);
    pub(super) const PATH: Tag = tag!(0xC2);
    pub(super) const GP: Tag = tag!(0xC3);
    pub(super) const NAMED: Tag = tag!(0xC4);
    pub(super) const VALUE: Tag = tag!(0xC5);
    pub(super) const KNOWN: &[Tag] = &[PIV, PATH, GP, NAMED, VALUE];
}

mod sealed {
    use super::*;
    pub(super) const NONCE: Tag = tag!(0xC1);
    pub(super) const CIPHERTEXT: Tag = tag!(0xC2);
    pub(super) const KNOWN: &[Tag] = &[NONCE, CIPHERTEXT];
}

mod key {
    use super::*;
    pub(super) const ENTRY: Tag = tag!(0xE1);
    pub(super) const LIST_KNOWN: &[Tag] = &[ENTRY];
    pub(super) const PIV_SLOT: Tag = tag!(0xC1);
    pub(super) const SCP03: Tag = tag!(0xC2);
    pub(super) const NAMED: Tag = tag!(0xC3);
    pub(super) const ALGORITHM: Tag = tag!(0xC4);
    pub(super) const MATERIAL: Tag = tag!(0xC5);
    pub(super) const ATTRIBUTES: Tag = tag!(0xE6);
    pub(super) const KNOWN: &[Tag] = &[PIV_SLOT, SCP03, NAMED, ALGORITHM, MATERIAL, ATTRIBUTES];
    pub(super) const ORIGIN: Tag = tag!(0xC1);
    pub(super) const PIN_POLICY: Tag = tag!(0xC2);
    pub(super) const TOUCH_POLICY: Tag = tag!(0xC3);
    pub(super) const ATTR_KNOWN: &[Tag] = &[ORIGIN, PIN_POLICY, TOUCH_POLICY];
}

mod password {
    use super::*;
    pub(super) const ENTRY: Tag = tag!(0xE1);
    pub(super) const LIST_KNOWN: &[Tag] = &[ENTRY];
    pub(super) const REF: Tag = tag!(0xC1);
    pub(super) const VERIFIER_KIND: Tag = tag!(0xC2);
    pub(super) const VERIFIER_KEY: Tag = tag!(0xC3);
    pub(super) const VERIFIER: Tag = tag!(0xC4);
    pub(super) const MAX_RETRIES: Tag = tag!(0xC5);
    pub(super) const RETRIES_LEFT: Tag = tag!(0xC6);
    pub(super) const MIN_LEN: Tag = tag!(0xC7);
    pub(super) const MAX_LEN: Tag = tag!(0xC8);
    pub(super) const KNOWN: &[Tag] = &[
        REF,
        VERIFIER_KIND,
        VERIFIER_KEY,
        VERIFIER,
        MAX_RETRIES,
        RETRIES_LEFT,
        MIN_LEN,
        MAX_LEN,
    ];
    /// HMAC-SHA256 with a 32-byte random key.
    pub(super) const KIND_HMAC_SHA256: u8 = 0x01;
}

/// What the header's structure says about one area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaStructure {
    pub area: AreaId,
    /// Bytes stored: the content length of the public area, the ciphertext
    /// length (with the 16-byte GCM tag) of an encrypted area.
    pub stored_len: u32,
    /// Number of objects, keys or password entries in the area.
    pub object_count: u32,
}

// ---------------------------------------------------------------- header

fn state_byte(s: State) -> u8 {
    match s {
        State::Active => 0x01,
        State::Disabled => 0x02,
    }
}

fn origin_byte(o: Origin) -> u8 {
    match o {
        Origin::Master => 0x01,
        Origin::Backup => 0x02,
        Origin::Temporary => 0x03,
        Origin::Chip => 0x04,
    }
}

fn rule_byte(r: AccessRule) -> u8 {
    match r {
        AccessRule::Always => 0x00,
        AccessRule::Pin => 0x01,
        AccessRule::Never => 0x02,
    }
}

fn rule_of(t: &TlvRef<'_>, field: &'static str) -> Result<AccessRule, ContentError> {
    match u8_of(t, field)? {
        0x00 => Ok(AccessRule::Always),
        0x01 => Ok(AccessRule::Pin),
        0x02 => Ok(AccessRule::Never),
        b => Err(ContentError::invalid(
            field,
            format!("unknown access rule {b:02X}"),
        )),
    }
}

fn encode_df(df: &Df) -> Tlv {
    let mut items = vec![prim(header::FID, df.fid.to_be_bytes())];
    if let Some(name) = &df.name {
        items.push(prim(header::DF_NAME, name.clone()));
    }
    for c in &df.children {
        items.push(match c {
            Node::Df(d) => encode_df(d),
            Node::Ef(e) => cons(
                header::EF,
                &[
                    prim(header::FID, e.fid.to_be_bytes()),
                    prim(
                        header::EF_AREA,
                        [match e.area {
                            EfArea::Public => AreaId::Public.to_byte(),
                            EfArea::Private => AreaId::Private.to_byte(),
                        }],
                    ),
                    prim(header::EF_READ, [rule_byte(e.read)]),
                    prim(header::EF_UPDATE, [rule_byte(e.update)]),
                    prim(header::EF_SIZE, e.size.to_be_bytes()),
                ],
            ),
        });
    }
    cons(header::DF, &items)
}

fn decode_df(t: &TlvRef<'_>, depth: usize, lenient: bool) -> Result<Df, ContentError> {
    // Depth is bounded here, before recursing; the full rules are checked on
    // the whole tree afterwards.
    if depth > super::model::MAX_DF_DEPTH {
        return Err(ContentError::invalid("hierarchy", "DFs nested too deep"));
    }
    let mut f = Fields::of(t, header::DF_KNOWN, "a DF", lenient)?;
    let fid = u16_of(&f.req(header::FID, "DF FID")?, "DF FID")?;
    let name = f.opt(header::DF_NAME).map(|n| n.value.to_vec());
    let mut children = Vec::new();
    while let Some(c) = f.any_of(&[header::DF, header::EF]) {
        if c.tag == header::DF {
            children.push(Node::Df(decode_df(&c, depth + 1, lenient)?));
        } else {
            let mut e = Fields::of(&c, header::EF_KNOWN, "an EF", lenient)?;
            let fid = u16_of(&e.req(header::FID, "EF FID")?, "EF FID")?;
            let area = match u8_of(&e.req(header::EF_AREA, "EF area")?, "EF area")? {
                0x03 => EfArea::Public,
                0x04 => EfArea::Private,
                b => {
                    return Err(ContentError::invalid(
                        "EF area",
                        format!("{b:02X} is not 03 (public) or 04 (private)"),
                    ))
                }
            };
            let read = rule_of(&e.req(header::EF_READ, "EF read rule")?, "EF read rule")?;
            let update = rule_of(&e.req(header::EF_UPDATE, "EF update rule")?, "EF update rule")?;
            let size = u32_of(&e.req(header::EF_SIZE, "EF size")?, "EF size")?;
            e.finish()?;
            children.push(Node::Ef(Ef {
                fid,
                area,
                read,
                update,
                size,
            }));
        }
    }
    f.finish()?;
    Ok(Df { fid, name, children })
}

pub(crate) fn encode_header(h: &Header, structure: &[AreaStructure]) -> Tlv {
    let a = &h.attributes;
    let serials: Vec<Tlv> = a
        .chip_serials
        .iter()
        .map(|s| prim(header::SERIAL, s.clone()))
        .collect();
    let areas: Vec<Tlv> = structure
        .iter()
        .map(|s| {
            cons(
                header::AREA,
                &[
                    prim(header::AREA_ID, [s.area.to_byte()]),
                    prim(header::AREA_LEN, s.stored_len.to_be_bytes()),
                    prim(header::AREA_COUNT, s.object_count.to_be_bytes()),
                ],
            )
        })
        .collect();
    cons(
        body::HEADER,
        &[
            prim(header::UID, h.uid.as_bytes().to_vec()),
            prim(header::LABEL, h.label.as_bytes()),
            prim(header::TYPE, h.card_type.as_bytes()),
            cons(
                header::ATTRIBUTES,
                &[
                    prim(header::STATE, [state_byte(a.state)]),
                    prim(header::ORIGIN, [origin_byte(a.origin)]),
                    prim(header::CREATED, a.created_at.to_be_bytes()),
                    cons(header::SERIALS, &serials),
                ],
            ),
            cons(header::STRUCTURE, &areas),
            cons(header::HIERARCHY, &[encode_df(&h.hierarchy)]),
        ],
    )
}

/// The header and its structure part. Errors carry the field.
pub(crate) fn decode_header(
    t: &TlvRef<'_>,
    lenient: bool,
) -> Result<(Header, Vec<AreaStructure>), ContentError> {
    let mut f = Fields::of(t, header::KNOWN, "the header", lenient)?;
    let uid = Uid::from_bytes(fixed::<16>(&f.req(header::UID, "UID")?, "UID")?);
    let label = text_of(&f.req(header::LABEL, "label")?, "label")?;
    let card_type = text_of(&f.req(header::TYPE, "type")?, "type")?;

    let mut a = Fields::of(
        &f.req(header::ATTRIBUTES, "attributes")?,
        header::ATTR_KNOWN,
        "the attributes",
        lenient,
    )?;
    let state = match u8_of(&a.req(header::STATE, "state")?, "state")? {
        0x01 => State::Active,
        0x02 => State::Disabled,
        b => return Err(ContentError::invalid("state", format!("unknown state {b:02X}"))),
    };
    let origin = match u8_of(&a.req(header::ORIGIN, "origin")?, "origin")? {
        0x01 => Origin::Master,
        0x02 => Origin::Backup,
        0x03 => Origin::Temporary,
        0x04 => Origin::Chip,
        b => return Err(ContentError::invalid("origin", format!("unknown origin {b:02X}"))),
    };
    let created_at = u64_of(&a.req(header::CREATED, "created-at")?, "created-at")?;
    let mut s = Fields::of(
        &a.req(header::SERIALS, "chip serials")?,
        header::SERIAL_KNOWN,
        "the chip serials",
        lenient,
    )?;
    let chip_serials = s.many(header::SERIAL).iter().map(|t| t.value.to_vec()).collect();
    s.finish()?;
    a.finish()?;

    let mut st = Fields::of(
        &f.req(header::STRUCTURE, "structure")?,
        header::STRUCT_KNOWN,
        "the structure",
        lenient,
    )?;
    let mut structure = Vec::new();
    for e in st.many(header::AREA) {
        let mut e = Fields::of(&e, header::AREA_KNOWN, "a structure entry", lenient)?;
        let id = u8_of(&e.req(header::AREA_ID, "structure area id")?, "structure area id")?;
        let area = AreaId::from_byte(id)
            .ok_or_else(|| ContentError::invalid("structure", format!("unknown area id {id:02X}")))?;
        let stored_len = u32_of(&e.req(header::AREA_LEN, "structure length")?, "structure length")?;
        let object_count = u32_of(
            &e.req(header::AREA_COUNT, "structure object count")?,
            "structure object count",
        )?;
        e.finish()?;
        structure.push(AreaStructure {
            area,
            stored_len,
            object_count,
        });
    }
    st.finish()?;
    let listed: Vec<AreaId> = structure.iter().map(|s| s.area).collect();
    if listed != AreaId::ALL {
        return Err(ContentError::invalid(
            "structure",
            "must list the public, private, secret key and password areas once each, in that order",
        ));
    }

    let mut hf = Fields::of(
        &f.req(header::HIERARCHY, "hierarchy")?,
        header::HIER_KNOWN,
        "the hierarchy",
        lenient,
    )?;
    let hierarchy = decode_df(&hf.req(header::DF, "hierarchy root")?, 1, lenient)?;
    hf.finish()?;
    f.finish()?;

    let h = Header {
        uid,
        label,
        card_type,
        attributes: Attributes {
            state,
            origin,
            created_at,
            chip_serials,
        },
        hierarchy,
    };
    h.validate()
        .map_err(|(field, p)| ContentError::invalid(field, p))?;
    Ok((h, structure))
}

// ---------------------------------------------------------------- slots

fn descriptor_items(kind: &SlotKind) -> Vec<Tlv> {
    match kind {
        SlotKind::Password { params, salt } => vec![
            prim(slot::KIND, [slot::KIND_PASSWORD]),
            cons(
                slot::ARGON2,
                &[
                    prim(slot::VARIANT, [ARGON2ID]),
                    prim(slot::VERSION, [ARGON2_VERSION]),
                    prim(slot::M, params.m_cost_kib().to_be_bytes()),
                    prim(slot::T, params.t_cost().to_be_bytes()),
                    prim(slot::P, params.p_cost().to_be_bytes()),
                    prim(slot::SALT, salt.to_vec()),
                ],
            ),
        ],
        SlotKind::Kek { key_id } => vec![
            prim(slot::KIND, [slot::KIND_KEK]),
            prim(slot::KEY_ID, key_id.as_bytes()),
        ],
    }
}

/// The slot descriptor as bound into the wrap's associated data: the
/// encoding of the kind and its parameters or key id.
pub(crate) fn slot_descriptor(kind: &SlotKind) -> Vec<u8> {
    super::tlvio::concat(&descriptor_items(kind))
}

pub(crate) fn encode_slots(slots: &[KeySlot]) -> Tlv {
    let items: Vec<Tlv> = slots
        .iter()
        .map(|s| {
            let mut items = descriptor_items(&s.kind);
            items.push(prim(slot::NONCE, s.nonce.to_vec()));
            items.push(prim(slot::WRAPPED, s.wrapped.clone()));
            cons(slot::SLOT, &items)
        })
        .collect();
    cons(body::KEY_SLOTS, &items)
}

/// Slots as listed; bounds on the KDF parameters are checked by the caller.
/// A slot error carries its index.
pub(crate) fn decode_slots(t: &TlvRef<'_>, lenient: bool) -> Result<Vec<KeySlot>, (usize, ContentError)> {
    let mut f = Fields::of(t, slot::LIST_KNOWN, "the key slots", lenient).map_err(|e| (0, e))?;
    let list = f.many(slot::SLOT);
    let n = list.len();
    f.finish().map_err(|e| (n, e))?;
    list.iter()
        .enumerate()
        .map(|(i, s)| decode_slot(s, lenient).map_err(|e| (i, e)))
        .collect()
}

fn decode_slot(t: &TlvRef<'_>, lenient: bool) -> Result<KeySlot, ContentError> {
    let mut f = Fields::of(t, slot::KNOWN, "a key slot", lenient)?;
    let kind = match u8_of(&f.req(slot::KIND, "slot kind")?, "slot kind")? {
        slot::KIND_PASSWORD => {
            let mut a = Fields::of(
                &f.req(slot::ARGON2, "Argon2id parameters")?,
                slot::ARGON2_KNOWN,
                "the Argon2id parameters",
                lenient,
            )?;
            let variant = u8_of(&a.req(slot::VARIANT, "Argon2 variant")?, "Argon2 variant")?;
            if variant != ARGON2ID {
                return Err(ContentError::invalid(
                    "Argon2 variant",
                    format!("{variant:02X} is not Argon2id (02)"),
                ));
            }
            let version = u8_of(&a.req(slot::VERSION, "Argon2 version")?, "Argon2 version")?;
            if version != ARGON2_VERSION {
                return Err(ContentError::invalid(
                    "Argon2 version",
                    format!("{version:02X} is not 13"),
                ));
            }
            let m = u32_of(&a.req(slot::M, "m_cost")?, "m_cost")?;
            let t = u32_of(&a.req(slot::T, "t_cost")?, "t_cost")?;
            let p = u32_of(&a.req(slot::P, "p_cost")?, "p_cost")?;
            let salt = fixed::<SALT_LEN>(&a.req(slot::SALT, "salt")?, "salt")?;
            a.finish()?;
            SlotKind::Password {
                params: Argon2Params::from_file(m, t, p),
                salt,
            }
        }
        slot::KIND_KEK => SlotKind::Kek {
            key_id: text_of(&f.req(slot::KEY_ID, "KEK id")?, "KEK id")?,
        },
        b => {
            return Err(ContentError::invalid(
                "slot kind",
                format!("unknown slot kind {b:02X}"),
            ))
        }
    };
    let nonce = fixed(&f.req(slot::NONCE, "nonce")?, "nonce")?;
    let wrapped = f.req(slot::WRAPPED, "wrapped DEK")?.value.to_vec();
    if wrapped.len() != WRAPPED_LEN {
        return Err(ContentError::invalid(
            "wrapped DEK",
            format!("has {} bytes, not {WRAPPED_LEN}", wrapped.len()),
        ));
    }
    f.finish()?;
    Ok(KeySlot { kind, nonce, wrapped })
}

// ---------------------------------------------------------------- data objects

fn encode_object(id: &ObjectId, value: &[u8]) -> Tlv {
    let id_tlv = match id {
        ObjectId::Piv(t) => prim(object::PIV, t.to_be_bytes()),
        ObjectId::File(p) => prim(
            object::PATH,
            p.iter().flat_map(|f| f.to_be_bytes()).collect::<Vec<u8>>(),
        ),
        ObjectId::Gp(t) => prim(object::GP, t.to_be_bytes()),
        ObjectId::Named(n) => prim(object::NAMED, n.as_bytes()),
    };
    cons(object::OBJECT, &[id_tlv, prim(object::VALUE, value)])
}

/// The content of the public area, or the plaintext of the private area.
pub(crate) fn encode_objects<'a>(objects: impl Iterator<Item = (&'a ObjectId, &'a Vec<u8>)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, v) in objects {
        encode_object(id, v).write(&mut out);
    }
    out
}

fn decode_object_id(f: &mut Fields<'_>) -> Result<ObjectId, ContentError> {
    let mut ids = Vec::new();
    if let Some(t) = f.opt(object::PIV) {
        ids.push(ObjectId::Piv(u32_of(&t, "PIV tag")?));
    }
    if let Some(t) = f.opt(object::PATH) {
        if t.value.len() % 2 != 0 || t.value.is_empty() || t.value.len() > 2 * MAX_PATH_LEN {
            return Err(ContentError::invalid(
                "EF path",
                format!("1 to {MAX_PATH_LEN} two-byte FIDs"),
            ));
        }
        let path = t
            .value
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
            .collect();
        ids.push(ObjectId::File(path));
    }
    if let Some(t) = f.opt(object::GP) {
        ids.push(ObjectId::Gp(u32_of(&t, "GP tag")?));
    }
    if let Some(t) = f.opt(object::NAMED) {
        ids.push(ObjectId::Named(text_of(&t, "object name")?));
    }
    let mut ids = ids.into_iter();
    match (ids.next(), ids.next()) {
        (Some(id), None) => {
            id.validate().map_err(|p| ContentError::invalid("object id", p))?;
            Ok(id)
        }
        (None, _) => Err(ContentError::Missing { field: "object id" }),
        (Some(_), Some(_)) => Err(ContentError::invalid("object id", "an object has exactly one id")),
    }
}

/// Data objects from a sequence of object TLVs. Checks that no id appears
/// twice and that EF objects match `hierarchy` and `area`.
pub(crate) fn decode_objects(
    items: Vec<TlvRef<'_>>,
    lenient: bool,
    hierarchy: &Df,
    area: EfArea,
) -> Result<BTreeMap<ObjectId, Vec<u8>>, ContentError> {
    let mut list = Fields::new(items, object::LIST_KNOWN, "an area", lenient);
    let mut out = BTreeMap::new();
    for o in list.many(object::OBJECT) {
        let mut f = Fields::of(&o, object::KNOWN, "a data object", lenient)?;
        let id = decode_object_id(&mut f)?;
        let value = f.req(object::VALUE, "object value")?.value.to_vec();
        f.finish()?;
        let object = DataObject { id, value };
        check_object_placement(&object, hierarchy, area)
            .map_err(|p| ContentError::invalid("data object", p))?;
        if out.contains_key(&object.id) {
            return Err(ContentError::invalid(
                "data object",
                format!("{} appears twice", object.id),
            ));
        }
        out.insert(object.id, object.value);
    }
    list.finish()?;
    Ok(out)
}

/// An EF object must name an EF of the hierarchy assigned to `area`, and fit.
pub(crate) fn check_object_placement(o: &DataObject, hierarchy: &Df, area: EfArea) -> Result<(), String> {
    o.id.validate()?;
    if let ObjectId::File(path) = &o.id {
        let ef = hierarchy
            .find_ef(path)
            .ok_or_else(|| format!("{} is not an EF of the hierarchy", o.id))?;
        if ef.area != area {
            return Err(format!("{} belongs to the {:?} area", o.id, ef.area).to_lowercase());
        }
        if o.value.len() as u64 > u64::from(ef.size) {
            return Err(format!(
                "{} holds {} bytes but the EF has {} allocated",
                o.id,
                o.value.len(),
                ef.size
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- sealed areas

pub(crate) fn encode_sealed(tag: Tag, nonce: &[u8; 12], ciphertext: &[u8]) -> Tlv {
    cons(
        tag,
        &[
            prim(sealed::NONCE, nonce.to_vec()),
            prim(sealed::CIPHERTEXT, ciphertext),
        ],
    )
}

pub(crate) fn decode_sealed<'a>(t: &TlvRef<'a>, lenient: bool) -> Result<([u8; 12], &'a [u8]), ContentError> {
    let mut f = Fields::of(t, sealed::KNOWN, "an encrypted area", lenient)?;
    let nonce = fixed(&f.req(sealed::NONCE, "nonce")?, "nonce")?;
    let ct = f.req(sealed::CIPHERTEXT, "ciphertext")?.value;
    if ct.len() < super::crypto::GCM_TAG_LEN {
        return Err(ContentError::invalid("ciphertext", "shorter than the GCM tag"));
    }
    f.finish()?;
    Ok((nonce, ct))
}

// ---------------------------------------------------------------- secret keys

fn key_origin_byte(o: KeyOrigin) -> u8 {
    match o {
        KeyOrigin::GeneratedOnMaster => 0x01,
        KeyOrigin::Imported => 0x02,
        KeyOrigin::GeneratedOnCard => 0x03,
    }
}

/// Appends tag, shortest length and value to a buffer that is zeroized
/// later (no intermediate `Tlv` copies of secrets).
fn write_tlv(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    tag.write(out);
    crate::codec::write_length(value.len(), out);
    out.extend_from_slice(value);
}

/// Room for an entry's fields around its secret bytes, so that the
/// zeroized buffers are not reallocated (leaving copies) while filled.
const ENTRY_OVERHEAD: usize = 320;

pub(crate) fn encode_keys<'a>(keys: impl Iterator<Item = &'a SecretKeyEntry>) -> Zeroizing<Vec<u8>> {
    let keys: Vec<&SecretKeyEntry> = keys.collect();
    let total: usize = keys
        .iter()
        .map(|k| 2 * (k.material().len() + ENTRY_OVERHEAD))
        .sum();
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    for k in keys {
        let mut inner = Zeroizing::new(Vec::with_capacity(k.material().len() + ENTRY_OVERHEAD));
        match &k.id {
            KeyRef::PivSlot(s) => write_tlv(&mut inner, key::PIV_SLOT, &[*s]),
            KeyRef::Scp03 { kvn, kid } => write_tlv(&mut inner, key::SCP03, &[*kvn, *kid]),
            KeyRef::Named(n) => write_tlv(&mut inner, key::NAMED, n.as_bytes()),
        }
        write_tlv(&mut inner, key::ALGORITHM, &[k.algorithm.to_byte()]);
        write_tlv(&mut inner, key::MATERIAL, k.material().expose_secret());
        cons(
            key::ATTRIBUTES,
            &[
                prim(key::ORIGIN, [key_origin_byte(k.attributes.origin)]),
                prim(key::PIN_POLICY, [k.attributes.pin_policy.to_byte()]),
                prim(key::TOUCH_POLICY, [k.attributes.touch_policy.to_byte()]),
            ],
        )
        .write(&mut inner);
        write_tlv(&mut out, key::ENTRY, &inner);
    }
    out
}

pub(crate) fn decode_keys(
    plaintext: &[u8],
    lenient: bool,
) -> Result<BTreeMap<KeyRef, SecretKeyEntry>, ContentError> {
    let mut list = Fields::new(seq(plaintext)?, key::LIST_KNOWN, "the secret key area", lenient);
    let mut out = BTreeMap::new();
    for e in list.many(key::ENTRY) {
        let mut f = Fields::of(&e, key::KNOWN, "a key entry", lenient)?;
        let mut ids = Vec::new();
        if let Some(t) = f.opt(key::PIV_SLOT) {
            ids.push(KeyRef::PivSlot(u8_of(&t, "PIV key reference")?));
        }
        if let Some(t) = f.opt(key::SCP03) {
            let [kvn, kid] = fixed::<2>(&t, "SCP03 key")?;
            ids.push(KeyRef::Scp03 { kvn, kid });
        }
        if let Some(t) = f.opt(key::NAMED) {
            ids.push(KeyRef::Named(text_of(&t, "key name")?));
        }
        let mut ids = ids.into_iter();
        let id = match (ids.next(), ids.next()) {
            (Some(id), None) => id,
            (None, _) => {
                return Err(ContentError::Missing {
                    field: "key reference",
                })
            }
            (Some(_), Some(_)) => {
                return Err(ContentError::invalid(
                    "key reference",
                    "a key has exactly one reference",
                ))
            }
        };
        let algorithm = KeyAlgorithm::from_byte(u8_of(&f.req(key::ALGORITHM, "algorithm")?, "algorithm")?);
        let material = SecretBytes::from_slice(f.req(key::MATERIAL, "key material")?.value);
        let mut a = Fields::of(
            &f.req(key::ATTRIBUTES, "key attributes")?,
            key::ATTR_KNOWN,
            "the key attributes",
            lenient,
        )?;
        let origin = match u8_of(&a.req(key::ORIGIN, "key origin")?, "key origin")? {
            0x01 => KeyOrigin::GeneratedOnMaster,
            0x02 => KeyOrigin::Imported,
            0x03 => KeyOrigin::GeneratedOnCard,
            b => {
                return Err(ContentError::invalid(
                    "key origin",
                    format!("unknown origin {b:02X}"),
                ))
            }
        };
        let pin_policy = PinPolicy::from_byte(u8_of(&a.req(key::PIN_POLICY, "PIN policy")?, "PIN policy")?);
        let touch_policy =
            TouchPolicy::from_byte(u8_of(&a.req(key::TOUCH_POLICY, "touch policy")?, "touch policy")?);
        a.finish()?;
        f.finish()?;
        let entry = SecretKeyEntry::from_parts(
            id.clone(),
            algorithm,
            material,
            KeyAttributes {
                origin,
                pin_policy,
                touch_policy,
            },
        )
        .map_err(|p| ContentError::invalid("key entry", p))?;
        if out.insert(id.clone(), entry).is_some() {
            return Err(ContentError::invalid("key entry", format!("{id} appears twice")));
        }
    }
    list.finish()?;
    Ok(out)
}

// ---------------------------------------------------------------- passwords

pub(crate) fn encode_passwords<'a>(entries: impl Iterator<Item = &'a PasswordEntry>) -> Zeroizing<Vec<u8>> {
    let entries: Vec<&PasswordEntry> = entries.collect();
    let mut out = Zeroizing::new(Vec::with_capacity(entries.len() * 2 * ENTRY_OVERHEAD));
    for e in entries {
        let v = e.verifier();
        let mut inner = Zeroizing::new(Vec::with_capacity(ENTRY_OVERHEAD));
        write_tlv(&mut inner, password::REF, &[e.id.to_byte()]);
        write_tlv(&mut inner, password::VERIFIER_KIND, &[password::KIND_HMAC_SHA256]);
        write_tlv(&mut inner, password::VERIFIER_KEY, v.key().expose_secret());
        write_tlv(&mut inner, password::VERIFIER, v.mac().expose_secret());
        write_tlv(&mut inner, password::MAX_RETRIES, &[e.max_retries()]);
        write_tlv(&mut inner, password::RETRIES_LEFT, &[e.retries_left()]);
        write_tlv(&mut inner, password::MIN_LEN, &[e.min_len()]);
        write_tlv(&mut inner, password::MAX_LEN, &[e.max_len()]);
        write_tlv(&mut out, password::ENTRY, &inner);
    }
    out
}

fn secret_of(t: &TlvRef<'_>, field: &'static str, len: usize) -> Result<SecretBytes, ContentError> {
    if t.value.len() != len {
        return Err(ContentError::invalid(
            field,
            format!("has {} bytes, not {len}", t.value.len()),
        ));
    }
    Ok(SecretBytes::from_slice(t.value))
}

pub(crate) fn decode_passwords(
    plaintext: &[u8],
    lenient: bool,
) -> Result<BTreeMap<PasswordRef, PasswordEntry>, ContentError> {
    let mut list = Fields::new(
        seq(plaintext)?,
        password::LIST_KNOWN,
        "the password area",
        lenient,
    );
    let mut out = BTreeMap::new();
    for e in list.many(password::ENTRY) {
        let mut f = Fields::of(&e, password::KNOWN, "a password entry", lenient)?;
        let id = PasswordRef::from_byte(u8_of(
            &f.req(password::REF, "password reference")?,
            "password reference",
        )?);
        let kind = u8_of(&f.req(password::VERIFIER_KIND, "verifier kind")?, "verifier kind")?;
        if kind != password::KIND_HMAC_SHA256 {
            return Err(ContentError::invalid(
                "verifier kind",
                format!("unknown verifier kind {kind:02X}"),
            ));
        }
        let key = secret_of(
            &f.req(password::VERIFIER_KEY, "verifier key")?,
            "verifier key",
            Verifier::KEY_LEN,
        )?;
        let mac = secret_of(
            &f.req(password::VERIFIER, "verifier")?,
            "verifier",
            Verifier::MAC_LEN,
        )?;
        let verifier = Verifier::from_parts(key, mac);
        let max_retries = u8_of(&f.req(password::MAX_RETRIES, "max retries")?, "max retries")?;
        let retries_left = u8_of(&f.req(password::RETRIES_LEFT, "retries left")?, "retries left")?;
        let min_len = u8_of(&f.req(password::MIN_LEN, "min length")?, "min length")?;
        let max_len = u8_of(&f.req(password::MAX_LEN, "max length")?, "max length")?;
        f.finish()?;
        let entry = PasswordEntry::from_parts(id, verifier, max_retries, retries_left, min_len, max_len)
            .map_err(|p| ContentError::invalid("password entry", p))?;
        if out.insert(id, entry).is_some() {
            return Err(ContentError::invalid(
                "password entry",
                format!("{id} appears twice"),
            ));
        }
    }
    list.finish()?;
    Ok(out)
}
