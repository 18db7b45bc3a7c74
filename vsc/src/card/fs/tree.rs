//! Walking the VSC's file hierarchy by FID paths. A path always starts with
//! the MF, `3F00`.

use crate::file::{Df, Ef, Node, MF_FID};

/// The DF at `path` (from the MF, the MF included).
pub fn df_at<'a>(root: &'a Df, path: &[u16]) -> Option<&'a Df> {
    let (first, rest) = path.split_first()?;
    if *first != root.fid {
        return None;
    }
    rest.iter().try_fold(root, |df, fid| child_df(df, *fid))
}

/// The DF at `path`, to change it.
pub fn df_at_mut<'a>(root: &'a mut Df, path: &[u16]) -> Option<&'a mut Df> {
    let (first, rest) = path.split_first()?;
    if *first != root.fid {
        return None;
    }
    let mut df = root;
    for fid in rest {
        df = df.children.iter_mut().find_map(|c| match c {
            Node::Df(d) if d.fid == *fid => Some(d),
            _ => None,
        })?;
    }
    Some(df)
}

pub fn child(df: &Df, fid: u16) -> Option<&Node> {
    df.children.iter().find(|c| c.fid() == fid)
}

pub fn child_df(df: &Df, fid: u16) -> Option<&Df> {
    match child(df, fid)? {
        Node::Df(d) => Some(d),
        Node::Ef(_) => None,
    }
}

pub fn child_ef(df: &Df, fid: u16) -> Option<&Ef> {
    match child(df, fid)? {
        Node::Ef(e) => Some(e),
        Node::Df(_) => None,
    }
}

/// The paths of every EF at or below `node`, whose parent DF is at
/// `parent`.
pub fn ef_paths(parent: &[u16], node: &Node) -> Vec<Vec<u16>> {
    let mut path = parent.to_vec();
    path.push(node.fid());
    match node {
        Node::Ef(_) => vec![path],
        Node::Df(d) => d.children.iter().flat_map(|c| ef_paths(&path, c)).collect(),
    }
}

/// How many nodes (DFs and EFs, this one included) `df` holds.
pub fn count_nodes(df: &Df) -> usize {
    1 + df
        .children
        .iter()
        .map(|c| match c {
            Node::Df(d) => count_nodes(d),
            Node::Ef(_) => 1,
        })
        .sum::<usize>()
}

/// FIDs two bytes each, as a path in a SELECT command (`None` when the
/// length is odd or zero).
pub fn fids(data: &[u8]) -> Option<Vec<u16>> {
    if data.is_empty() || data.len() % 2 != 0 {
        return None;
    }
    Some(
        data.chunks_exact(2)
            .filter_map(|c| <[u8; 2]>::try_from(c).ok())
            .map(u16::from_be_bytes)
            .collect(),
    )
}

/// The path of the MF alone.
pub fn mf_path() -> Vec<u16> {
    vec![MF_FID]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::file::{AccessRule, EfArea};

    fn ef(fid: u16) -> Node {
        Node::Ef(Ef {
            fid,
            area: EfArea::Public,
            read: AccessRule::Always,
            update: AccessRule::Never,
            size: 10,
        })
    }

    #[test]
    fn walks_paths() {
        let mut mf = Df::master_file();
        mf.children.push(ef(0x2F01));
        mf.children.push(Node::Df(Df {
            fid: 0x5015,
            name: None,
            children: vec![
                ef(0x4401),
                Node::Df(Df {
                    fid: 0x6000,
                    name: None,
                    children: vec![ef(0x1)],
                }),
            ],
        }));
        assert_eq!(df_at(&mf, &[0x3F00, 0x5015]).unwrap().fid, 0x5015);
        assert!(df_at(&mf, &[0x3F00, 0x2F01]).is_none());
        assert!(df_at(&mf, &[0x5015]).is_none());
        assert!(child_ef(&mf, 0x2F01).is_some() && child_df(&mf, 0x2F01).is_none());
        assert_eq!(count_nodes(&mf), 6);
        let dfnode = child(&mf, 0x5015).unwrap();
        assert_eq!(
            ef_paths(&[0x3F00], dfnode),
            vec![vec![0x3F00, 0x5015, 0x4401], vec![0x3F00, 0x5015, 0x6000, 0x0001]]
        );
        df_at_mut(&mut mf, &[0x3F00, 0x5015, 0x6000])
            .unwrap()
            .children
            .clear();
        assert_eq!(count_nodes(&mf), 5);
        assert_eq!(fids(&[0x50, 0x15, 0x44, 0x01]).unwrap(), vec![0x5015, 0x4401]);
        assert!(fids(&[0x50]).is_none() && fids(&[]).is_none());
    }
}
