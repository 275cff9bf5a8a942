//! Who owns an entry (`--owner`, `--group`): numeric ids as each side sees
//! them, and the names behind them where a side has names, so a tree moved
//! between machines keeps its users by name as rsync does.
//!
//! Local disk resolves both ways through the system's accounts (NSS, so
//! LDAP users too). An SFTP server (protocol v3) sends numeric ids only; its
//! listings' long names (`ls -l` lines) show the names, which are learned
//! as the walk goes, one way: names from ids. So names map into a local
//! destination; everywhere else the ids go as they are.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::OpError;
use crate::path::RelPath;

/// Ids to give an entry: the user and/or the group (`None`: left as is).
pub type GivenIds = (Option<u32>, Option<u32>);

/// A user id or a group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    User,
    Group,
}

/// Setting owners, and the names behind ids, where a backend has them.
#[async_trait]
pub trait Ownership: Send + Sync {
    /// Gives `path` (never followed if a link) the user `uid` and/or the
    /// group `gid`; `None` leaves that one as it is.
    async fn set_owner(&self, path: &RelPath, uid: Option<u32>, gid: Option<u32>) -> Result<(), OpError>;

    /// The name of `id` on this side, when it has one.
    fn name_of(&self, kind: IdKind, id: u32) -> Option<Vec<u8>>;

    /// The id `name` has on this side, when this side can tell.
    fn id_of(&self, kind: IdKind, name: &[u8]) -> Option<u32>;
}

/// The local system's accounts.
pub fn system_name_of(kind: IdKind, id: u32) -> Option<Vec<u8>> {
    match kind {
        IdKind::User => uzers::get_user_by_uid(id).map(|u| u.name().as_bytes().to_vec()),
        IdKind::Group => uzers::get_group_by_gid(id).map(|g| g.name().as_bytes().to_vec()),
    }
}

/// See [`system_name_of`].
pub fn system_id_of(kind: IdKind, name: &[u8]) -> Option<u32> {
    let name = OsStr::from_bytes(name);
    match kind {
        IdKind::User => uzers::get_user_by_name(name).map(|u| u.uid()),
        IdKind::Group => uzers::get_group_by_name(name).map(|g| g.gid()),
    }
}

/// Names learned from listings: id -> name, per kind.
#[derive(Default)]
pub struct LearnedNames {
    names: Mutex<HashMap<(IdKind, u32), Vec<u8>>>,
}

impl LearnedNames {
    /// Learns the names in an OpenSSH-style long name (`-rw-r--r-- 1 alice
    /// staff 12 Jan 1 12:00 name`) of an entry owned by `uid`:`gid`. A
    /// column that is the id itself (no name on the server) teaches nothing.
    pub fn learn(&self, longname: &[u8], uid: u32, gid: u32) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.contains_key(&(IdKind::User, uid)) && names.contains_key(&(IdKind::Group, gid)) {
            return;
        }
        let mut columns = longname.split(|b| *b == b' ').filter(|c| !c.is_empty()).skip(2);
        let (Some(user), Some(group)) = (columns.next(), columns.next()) else { return };
        for (kind, id, name) in [(IdKind::User, uid, user), (IdKind::Group, gid, group)] {
            if name != id.to_string().as_bytes() {
                names.entry((kind, id)).or_insert_with(|| name.to_vec());
            }
        }
    }

    pub fn name_of(&self, kind: IdKind, id: u32) -> Option<Vec<u8>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).get(&(kind, id)).cloned()
    }
}

/// Source ids turned into destination ids: by name where the source names
/// an id and the destination knows that name (`--numeric-ids` off), else
/// the number itself. Each id is looked up once per run.
pub struct OwnerMap {
    by_name: bool,
    cache: HashMap<(IdKind, u32), u32>,
}

impl OwnerMap {
    pub fn new(by_name: bool) -> OwnerMap {
        OwnerMap { by_name, cache: HashMap::new() }
    }

    /// The destination's id for the source's `id`.
    pub fn map(&mut self, kind: IdKind, id: u32, src: Option<&dyn Ownership>, dst: Option<&dyn Ownership>) -> u32 {
        if !self.by_name {
            return id;
        }
        *self.cache.entry((kind, id)).or_insert_with(|| {
            let named = src.and_then(|s| s.name_of(kind, id));
            named.and_then(|name| dst.and_then(|d| d.id_of(kind, &name))).unwrap_or(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_teach_names_but_not_bare_ids() {
        let learned = LearnedNames::default();
        learned.learn(b"-rw-r--r--    1 alice    staff        12 Jan  1 12:00 a.txt", 1000, 50);
        learned.learn(b"-rw-r--r--    1 1001     staff        12 Jan  1 12:00 b.txt", 1001, 50);
        learned.learn(b"garbage", 7, 7);
        assert_eq!(learned.name_of(IdKind::User, 1000).as_deref(), Some(&b"alice"[..]));
        assert_eq!(learned.name_of(IdKind::Group, 50).as_deref(), Some(&b"staff"[..]));
        assert_eq!(learned.name_of(IdKind::User, 1001), None);
        assert_eq!(learned.name_of(IdKind::User, 7), None);
    }

    /// A side that names ids from a fixed table (both ways).
    struct Table(Vec<(IdKind, u32, &'static str)>);

    #[async_trait]
    impl Ownership for Table {
        async fn set_owner(&self, _: &RelPath, _: Option<u32>, _: Option<u32>) -> Result<(), OpError> {
            Ok(())
        }
        fn name_of(&self, kind: IdKind, id: u32) -> Option<Vec<u8>> {
            self.0.iter().find(|(k, i, _)| *k == kind && *i == id).map(|(_, _, n)| n.as_bytes().to_vec())
        }
        fn id_of(&self, kind: IdKind, name: &[u8]) -> Option<u32> {
            self.0.iter().find(|(k, _, n)| *k == kind && n.as_bytes() == name).map(|(_, i, _)| *i)
        }
    }

    #[test]
    fn ids_map_by_name_where_both_sides_have_it_else_by_number() {
        let src = Table(vec![(IdKind::User, 1000, "alice"), (IdKind::User, 1001, "bob"), (IdKind::Group, 50, "staff")]);
        let dst = Table(vec![(IdKind::User, 2000, "alice"), (IdKind::Group, 60, "staff")]);
        let mut map = OwnerMap::new(true);
        assert_eq!(map.map(IdKind::User, 1000, Some(&src), Some(&dst)), 2000);
        assert_eq!(map.map(IdKind::User, 1001, Some(&src), Some(&dst)), 1001, "bob is not there: his number");
        assert_eq!(map.map(IdKind::User, 4242, Some(&src), Some(&dst)), 4242, "no name at all");
        assert_eq!(map.map(IdKind::Group, 50, Some(&src), Some(&dst)), 60);
        assert_eq!(OwnerMap::new(true).map(IdKind::User, 1000, Some(&src), None), 1000, "no names there");
        let mut numeric = OwnerMap::new(false);
        assert_eq!(numeric.map(IdKind::User, 1000, Some(&src), Some(&dst)), 1000);
    }

    #[test]
    fn the_system_knows_root() {
        assert_eq!(system_name_of(IdKind::User, 0).as_deref(), Some(&b"root"[..]));
        assert_eq!(system_id_of(IdKind::User, b"root"), Some(0));
        assert_eq!(system_id_of(IdKind::User, b"no-such-user-barge"), None);
    }
}
