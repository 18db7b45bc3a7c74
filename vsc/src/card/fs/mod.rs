//! The data-object file system: the seed's public and private areas as a DF
//! with EFs under the MF (`3F00`) (seed 000, claims 7–8).
//!
//! The hierarchy (DFs, EFs with area, access rules and size) lives in the
//! VSC header; an EF's content is the data object `ObjectId::File(path)` in
//! the public or private area, as the EF's area says. An EF holds a data
//! object of up to its allocated size (see [`fcp`] for what SELECT returns).
//!
//! | command | APDU | answers |
//! |---|---|---|
//! | SELECT | `00 A4 P1 P2` | FCP (`62`, see [`fcp`]) unless P2 = `0C` |
//! | READ BINARY | `00 B0 offset Le` | the bytes |
//! | UPDATE BINARY | `00 D6 offset data` | `9000` |
//! | CREATE FILE | `00 E0 00 00 62{…}` | `9000`; the new file becomes the current one |
//! | DELETE FILE | `00 E4 00 00 [FID]` | `9000` |
//! | VERIFY | `00 20 00 80 [PIN]`; `00 20 FF 80` forgets it | as [`crate::card::pin::verify`] |
//!
//! **SELECT.** P1 `00`: the MF (`3F00` or no data), else a file that is a
//! child of the current DF, the parent DF or a child of the parent DF; `01`:
//! a child DF; `02`: a child EF; `03`: the parent DF (no data); `08`: a path
//! from the MF without the MF's FID; `09`: a path from the current DF. P2:
//! `00`, `04`, `08` return the FCP, `0C` nothing; any occurrence bits answer
//! `6A86`. A FID that is not two bytes, or an odd path: `6700`. Not found:
//! `6A82` (the current file stays). While the card is CARD_LOCKED or
//! TERMINATED the file system cannot be selected: `6A81`.
//!
//! **READ BINARY / UPDATE BINARY** work on the current EF (none: `6986`),
//! with a 15-bit offset in P1-P2 (P1 bit 8, a short EF identifier: this card
//! has none, `6A82`).
//!
//! - Reading: offset beyond the content: `6B00`. Fewer bytes left than Le
//!   asks: `6282` with what there is. Le `00` (or extended `0000`) means "up
//!   to 256 (65 536)" and answers `9000` with what there is, as long as
//!   something is left (at the end: `6282`, no data).
//! - Writing: the data replaces the bytes from the offset on and may extend
//!   the content, without a gap: an offset beyond the content answers `6B00`,
//!   a write past the allocated size `6A84`, no data `6700`.
//!
//! **Access rules** (per EF, for reading and for updating): `always`; `pin`:
//! the card's global PIN was verified since reset (VERIFY works here as in
//! PIV; the status is shared); `never`. A rule that is not met answers
//! `6982`. One exception: before the card is SECURED (OP_READY,
//! INITIALIZED), the issuer may UPDATE BINARY any EF through an SCP03
//! session: that is how a card is personalized with EFs nobody may change
//! later (an address with update `never`). Reading never bypasses the rule.
//!
//! **CREATE FILE / DELETE FILE** need the issuer's authority (an SCP03
//! session, else `6982`) and a card that is not CARD_LOCKED or TERMINATED
//! (`6985`). CREATE FILE: P1-P2 other than `0000`: `6A86`; the FID exists in
//! the current DF: `6A89`; too deep, too many files or an EF path longer than
//! the VSC allows: `6A84`. DELETE FILE deletes a child of the current DF
//! named by FID, or without data the current file (the current EF, else the
//! current DF), with everything below it and its content; the MF cannot be
//! deleted (`6985`); not found `6A82`.
//!
//! Any other instruction answers `6D00`; a proprietary class `6E00`.

pub mod fcp;
mod tree;

use crate::codec::{CommandApdu, Instruction, ResponseApdu, StatusWord};
use crate::file::{
    AccessRule, DataObject, Df, Ef, EfArea, Node, ObjectId, PasswordRef, MAX_DF_DEPTH, MAX_NODES,
    MAX_PATH_LEN, MF_FID,
};

use super::app::{Application, Ctx};
use super::gp_state::{self, LifeCycle};
use super::pin;

/// The file system application (selected by FID, not AID).
#[derive(Debug)]
pub struct FileSystem {
    /// The current DF, as a path from the MF (the MF included).
    df: Vec<u16>,
    /// The current EF, a child of the current DF.
    ef: Option<u16>,
}

impl Default for FileSystem {
    fn default() -> Self {
        FileSystem {
            df: tree::mf_path(),
            ef: None,
        }
    }
}

/// Where a SELECT lands.
enum Target {
    Df(Vec<u16>),
    Ef { parent: Vec<u16>, fid: u16 },
}

fn fid_of(data: &[u8]) -> Result<u16, StatusWord> {
    <[u8; 2]>::try_from(data)
        .map(u16::from_be_bytes)
        .map_err(|_| StatusWord::WrongLength)
}

/// Walks `path` (FIDs) down from the DF at `from`: every FID but the last
/// names a child DF; the last a child DF or EF.
fn walk(root: &Df, from: &[u16], path: &[u16]) -> Option<Target> {
    let (last, dfs) = path.split_last()?;
    let mut at = from.to_vec();
    for fid in dfs {
        tree::child_df(tree::df_at(root, &at)?, *fid)?;
        at.push(*fid);
    }
    let parent = tree::df_at(root, &at)?;
    match tree::child(parent, *last)? {
        Node::Df(_) => {
            at.push(*last);
            Some(Target::Df(at))
        }
        Node::Ef(_) => Some(Target::Ef {
            parent: at,
            fid: *last,
        }),
    }
}

/// Reading with offset and Ne (`None`: as many as there are).
fn read_slice(content: &[u8], offset: usize, ne: Option<usize>) -> Result<ResponseApdu, StatusWord> {
    let avail = content.get(offset..).ok_or(StatusWord::WrongP1P2)?;
    let up_to = matches!(ne, None | Some(256) | Some(65_536));
    let want = ne.unwrap_or(256);
    if avail.is_empty() || (avail.len() < want && !up_to) {
        return Ok(ResponseApdu::new(avail.to_vec(), StatusWord::EndOfData));
    }
    Ok(ResponseApdu::success(avail.get(..want).unwrap_or(avail).to_vec()))
}

/// Offset of READ/UPDATE BINARY: 15 bits; P1 bit 8 would be a short EF
/// identifier, and this card has no SFIs.
fn offset(cmd: &CommandApdu) -> Result<usize, StatusWord> {
    if cmd.p1() & 0x80 != 0 {
        return Err(StatusWord::FileNotFound);
    }
    Ok(usize::from(u16::from_be_bytes([cmd.p1(), cmd.p2()])))
}

fn rule_met(rule: AccessRule, ctx: &Ctx<'_>) -> bool {
    match rule {
        AccessRule::Always => true,
        AccessRule::Pin => ctx.security.pin_verified,
        AccessRule::Never => false,
    }
}

fn content_of(ctx: &Ctx<'_>, ef: &Ef, path: &[u16]) -> Vec<u8> {
    let id = ObjectId::File(path.to_vec());
    let area = match ef.area {
        EfArea::Public => ctx.store.vsc().public_area(),
        EfArea::Private => ctx.store.vsc().private_area(),
    };
    area.get(&id).cloned().unwrap_or_default()
}

impl FileSystem {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current DF's path, back at the MF if it no longer exists.
    fn current_df(&mut self, root: &Df) -> Vec<u16> {
        if tree::df_at(root, &self.df).is_none() {
            *self = FileSystem::default();
        }
        self.df.clone()
    }

    /// The current EF and its path.
    fn current_ef(&mut self, root: &Df) -> Result<(Ef, Vec<u16>), StatusWord> {
        let df_path = self.current_df(root);
        let fid = self.ef.ok_or(StatusWord::CommandNotAllowed)?;
        let ef = tree::df_at(root, &df_path)
            .and_then(|df| tree::child_ef(df, fid))
            .ok_or(StatusWord::CommandNotAllowed)?;
        let mut path = df_path;
        path.push(fid);
        Ok((ef.clone(), path))
    }

    fn find(&mut self, root: &Df, cmd: &CommandApdu) -> Result<Target, StatusWord> {
        let data = cmd.data();
        let current = self.current_df(root);
        let parent = current.split_last().map(|(_, p)| p.to_vec()).unwrap_or_default();
        let not_found = StatusWord::FileNotFound;
        match cmd.p1() {
            0x00 => {
                if data.is_empty() {
                    return Ok(Target::Df(tree::mf_path()));
                }
                let fid = fid_of(data)?;
                if fid == MF_FID {
                    return Ok(Target::Df(tree::mf_path()));
                }
                if let Some(t) = walk(root, &current, &[fid]) {
                    return Ok(t);
                }
                if parent.is_empty() {
                    return Err(not_found);
                }
                if parent.last() == Some(&fid) {
                    return Ok(Target::Df(parent));
                }
                walk(root, &parent, &[fid]).ok_or(not_found)
            }
            0x01 => match walk(root, &current, &[fid_of(data)?]) {
                Some(t @ Target::Df(_)) => Ok(t),
                _ => Err(not_found),
            },
            0x02 => match walk(root, &current, &[fid_of(data)?]) {
                Some(t @ Target::Ef { .. }) => Ok(t),
                _ => Err(not_found),
            },
            0x03 => {
                if !data.is_empty() {
                    return Err(StatusWord::WrongLength);
                }
                if parent.is_empty() {
                    return Err(not_found);
                }
                Ok(Target::Df(parent))
            }
            0x08 => walk(
                root,
                &tree::mf_path(),
                &tree::fids(data).ok_or(StatusWord::WrongLength)?,
            )
            .ok_or(not_found),
            0x09 => walk(root, &current, &tree::fids(data).ok_or(StatusWord::WrongLength)?).ok_or(not_found),
            _ => Err(StatusWord::IncorrectP1P2),
        }
    }

    fn read_binary(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        let off = offset(cmd)?;
        if !cmd.data().is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let (ef, path) = self.current_ef(&ctx.store.vsc().header().hierarchy)?;
        if !rule_met(ef.read, ctx) {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        read_slice(&content_of(ctx, &ef, &path), off, cmd.ne())
    }

    fn update_binary(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        let off = offset(cmd)?;
        let data = cmd.data();
        if data.is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let (ef, path) = self.current_ef(&ctx.store.vsc().header().hierarchy)?;
        let life_cycle = gp_state::life_cycle(ctx.store.vsc());
        let personalization = ctx.issuer_authorized() && life_cycle.is_pre_issuance();
        if !personalization && !rule_met(ef.update, ctx) {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        if !life_cycle.allows_content_changes() {
            return Err(StatusWord::ConditionsOfUseNotSatisfied);
        }
        let mut content = content_of(ctx, &ef, &path);
        if off > content.len() {
            return Err(StatusWord::WrongP1P2);
        }
        let end = off + data.len();
        if end as u64 > u64::from(ef.size) {
            return Err(StatusWord::NotEnoughMemory);
        }
        if content.len() < end {
            content.resize(end, 0);
        }
        if let Some(dst) = content.get_mut(off..end) {
            dst.copy_from_slice(data);
        }
        let object = DataObject::new(ObjectId::File(path), content);
        let vsc = ctx.store.vsc_mut();
        match ef.area {
            EfArea::Public => vsc.put_public(object),
            EfArea::Private => vsc.put_private(object),
        }
        .map_err(|_| StatusWord::NotEnoughMemory)?;
        Ok(ResponseApdu::status(StatusWord::Success))
    }

    fn create_file(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        super::isd::require_issuer(ctx)?;
        super::isd::require_content_changes(ctx)?;
        let node = fcp::CreateFile::try_from(cmd)?.node;
        let mut root = ctx.store.vsc().header().hierarchy.clone();
        let df_path = self.current_df(&root);
        let df = tree::df_at_mut(&mut root, &df_path).ok_or(StatusWord::FileNotFound)?;
        if tree::child(df, node.fid()).is_some() {
            return Err(StatusWord::FileAlreadyExists);
        }
        let too_deep = match &node {
            Node::Df(_) => df_path.len() + 1 > MAX_DF_DEPTH,
            Node::Ef(_) => df_path.len() + 1 > MAX_PATH_LEN,
        };
        if too_deep {
            return Err(StatusWord::NotEnoughMemory);
        }
        let fid = node.fid();
        let is_df = matches!(node, Node::Df(_));
        df.children.push(node);
        if tree::count_nodes(&root) > MAX_NODES {
            return Err(StatusWord::NotEnoughMemory);
        }
        ctx.store
            .vsc_mut()
            .set_hierarchy(root)
            .map_err(|_| StatusWord::IncorrectData)?;
        if is_df {
            self.df.push(fid);
            self.ef = None;
        } else {
            self.ef = Some(fid);
        }
        Ok(ResponseApdu::status(StatusWord::Success))
    }

    fn delete_file(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        super::isd::require_issuer(ctx)?;
        super::isd::require_content_changes(ctx)?;
        if (cmd.p1(), cmd.p2()) != (0, 0) {
            return Err(StatusWord::IncorrectP1P2);
        }
        let mut root = ctx.store.vsc().header().hierarchy.clone();
        let current = self.current_df(&root);
        // The parent DF of the file to delete, and its FID.
        let (parent, fid) = match cmd.data() {
            [] => match self.ef {
                Some(fid) => (current.clone(), fid),
                None => match current.split_last() {
                    Some((fid, parent)) if !parent.is_empty() => (parent.to_vec(), *fid),
                    _ => return Err(StatusWord::ConditionsOfUseNotSatisfied),
                },
            },
            data => (current.clone(), fid_of(data)?),
        };
        let df = tree::df_at_mut(&mut root, &parent).ok_or(StatusWord::FileNotFound)?;
        let at = df
            .children
            .iter()
            .position(|c| c.fid() == fid)
            .ok_or(StatusWord::FileNotFound)?;
        let node = df.children.remove(at);
        let vsc = ctx.store.vsc_mut();
        for path in tree::ef_paths(&parent, &node) {
            let id = ObjectId::File(path);
            vsc.remove_public(&id);
            vsc.remove_private(&id);
        }
        vsc.set_hierarchy(root).map_err(|_| StatusWord::MemoryFailure)?;
        let mut deleted = parent.clone();
        deleted.push(fid);
        let current_df_gone = matches!(node, Node::Df(_)) && self.df.starts_with(&deleted);
        if current_df_gone {
            self.df = parent;
            self.ef = None;
        } else if self.df == parent && self.ef == Some(fid) {
            self.ef = None;
        }
        Ok(ResponseApdu::status(StatusWord::Success))
    }

    fn verify(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        if cmd.p2() != PasswordRef::Pin.to_byte() {
            return Err(StatusWord::ReferencedDataNotFound);
        }
        match cmd.p1() {
            0x00 => pin::verify(ctx, PasswordRef::Pin, cmd.data()),
            0xFF if cmd.data().is_empty() => {
                ctx.security.pin_verified = false;
                Ok(ResponseApdu::status(StatusWord::Success))
            }
            0xFF => Err(StatusWord::WrongLength),
            _ => Err(StatusWord::IncorrectP1P2),
        }
    }
}

fn locked(ctx: &Ctx<'_>) -> bool {
    matches!(
        gp_state::life_cycle(ctx.store.vsc()),
        LifeCycle::CardLocked | LifeCycle::Terminated
    )
}

impl Application for FileSystem {
    fn aid(&self) -> &'static [u8] {
        &[]
    }

    fn select(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        if locked(ctx) {
            return Err(StatusWord::FunctionNotSupported);
        }
        if cmd.p2() & !0x0C != 0 {
            return Err(StatusWord::IncorrectP1P2);
        }
        let root = ctx.store.vsc().header().hierarchy.clone();
        let target = self.find(&root, cmd)?;
        let fcp = match target {
            Target::Df(path) => {
                let df = tree::df_at(&root, &path).ok_or(StatusWord::FileNotFound)?;
                let fcp = fcp::df_fcp(df);
                self.df = path;
                self.ef = None;
                fcp
            }
            Target::Ef { parent, fid } => {
                let ef = tree::df_at(&root, &parent)
                    .and_then(|df| tree::child_ef(df, fid))
                    .ok_or(StatusWord::FileNotFound)?;
                let mut path = parent.clone();
                path.push(fid);
                let fcp = fcp::ef_fcp(ef, content_of(ctx, ef, &path).len());
                self.df = parent;
                self.ef = Some(fid);
                fcp
            }
        };
        Ok(if cmd.p2() & 0x0C == 0x0C {
            ResponseApdu::status(StatusWord::Success)
        } else {
            ResponseApdu::success(fcp.to_bytes())
        })
    }

    fn process(&mut self, ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
        let ins = cmd.ins();
        let known = matches!(
            ins,
            Instruction::ReadBinary
                | Instruction::UpdateBinary
                | Instruction::CreateFile
                | Instruction::Delete
                | Instruction::Verify
        );
        if !known {
            return Err(StatusWord::InstructionNotSupported);
        }
        if cmd.cla() & 0x80 != 0 {
            return Err(StatusWord::ClassNotSupported);
        }
        match ins {
            Instruction::ReadBinary => self.read_binary(ctx, cmd),
            Instruction::UpdateBinary => self.update_binary(ctx, cmd),
            Instruction::CreateFile => self.create_file(ctx, cmd),
            Instruction::Delete => self.delete_file(ctx, cmd),
            _ => self.verify(ctx, cmd),
        }
    }

    fn reset(&mut self) {
        *self = FileSystem::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reading_slices() {
        let c = b"0123456789";
        let r = read_slice(c, 2, Some(3)).unwrap();
        assert_eq!((r.data.as_slice(), r.sw), (&b"234"[..], StatusWord::Success));
        let r = read_slice(c, 8, Some(5)).unwrap();
        assert_eq!((r.data.as_slice(), r.sw), (&b"89"[..], StatusWord::EndOfData));
        let r = read_slice(c, 8, Some(256)).unwrap();
        assert_eq!((r.data.as_slice(), r.sw), (&b"89"[..], StatusWord::Success));
        let r = read_slice(c, 10, Some(256)).unwrap();
        assert_eq!((r.data.len(), r.sw), (0, StatusWord::EndOfData));
        assert_eq!(read_slice(c, 11, Some(1)).unwrap_err(), StatusWord::WrongP1P2);
        let big = vec![7u8; 300];
        assert_eq!(read_slice(&big, 0, Some(256)).unwrap().data.len(), 256);
        assert_eq!(read_slice(&big, 0, Some(65_536)).unwrap().data.len(), 300);
    }
}
