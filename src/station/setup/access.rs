//! Whether the user running the station is in its group, and what to tell them when they are not:
//! "permission denied" on `/dev/ttyUSB3` or the ledger says nothing about the fix, which is one
//! `usermod` and signing in again.

use std::path::Path;

use super::udev::STATION_GROUP;

/// The running user's standing with the station's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// root needs no group.
    Root,
    /// The process has the group.
    Member,
    /// The group file lists the user but this login session predates it.
    AddedNotActive {
        /// The user name.
        user: String,
    },
    /// Not in the group.
    NotMember {
        /// The user name.
        user: String,
    },
    /// There is no such group (not installed from the package, e.g. a developer's cargo run).
    NoGroup,
}

/// Reads this process's ids (`/proc/self/status`) and `/etc/group`.
pub fn membership() -> Membership {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "$USER".to_owned());
    membership_from(&status, &groups, &user)
}

fn ids(status: &str, field: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// [`membership`] from the texts of `/proc/self/status` and `/etc/group`.
pub fn membership_from(status: &str, group_file: &str, user: &str) -> Membership {
    if ids(status, "Uid:").first() == Some(&0) {
        return Membership::Root;
    }
    let Some((gid, members)) = group_file.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == STATION_GROUP).then_some(())?;
        let _password = f.next()?;
        let gid: u32 = f.next()?.parse().ok()?;
        let members: Vec<String> = f
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        Some((gid, members))
    }) else {
        return Membership::NoGroup;
    };
    let has = ids(status, "Groups:").contains(&gid) || ids(status, "Gid:").first() == Some(&gid);
    if has {
        Membership::Member
    } else if members.iter().any(|m| m == user) {
        Membership::AddedNotActive {
            user: user.to_owned(),
        }
    } else {
        Membership::NotMember {
            user: user.to_owned(),
        }
    }
}

/// What to tell a user who cannot open the station's ports, ledger or reports; `None` when group
/// membership is not the problem.
pub fn group_hint(m: &Membership) -> Option<String> {
    match m {
        Membership::NotMember { user } => Some(format!(
            "user {user} is not in the `{STATION_GROUP}` group, which may use the fixture's serial ports, the ledger and the reports: \
             ask an administrator to run `sudo usermod -aG {STATION_GROUP} {user}`, then sign out and in again"
        )),
        Membership::AddedNotActive { user } => Some(format!(
            "user {user} was added to the `{STATION_GROUP}` group after signing in: sign out and in again \
             (or start a shell in the group with `newgrp {STATION_GROUP}`)"
        )),
        Membership::Root | Membership::Member | Membership::NoGroup => None,
    }
}

/// Whether an error's text says the OS refused access (the chain of a ledger, serial or report
/// error): `EACCES`, or SQLite failing to open or write a file it may not touch.
pub fn looks_like_access_denied(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("permission denied")
        || m.contains("os error 13")
        || m.contains("unable to open database file")
        || m.contains("readonly database")
}

/// Whether `dir` exists and the group owns it (the layout the package makes); for `setup --check`.
pub fn dir_is_station_owned(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let gid = groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == STATION_GROUP).then_some(())?;
        f.nth(1)?.parse::<u32>().ok()
    });
    match (std::fs::metadata(dir), gid) {
        (Ok(meta), Some(gid)) => meta.is_dir() && meta.gid() == gid,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPS: &str = "root:x:0:\ndialout:x:20:bob\ndps-station:x:998:alice\n";

    #[test]
    fn membership_comes_from_the_process_groups_and_the_group_file() {
        let root = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t0\n";
        assert_eq!(membership_from(root, GROUPS, "root"), Membership::Root);
        let member =
            "Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t20 998\n";
        assert_eq!(membership_from(member, GROUPS, "alice"), Membership::Member);
        let not = "Uid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\nGroups:\t20\n";
        assert_eq!(
            membership_from(not, GROUPS, "alice"),
            Membership::AddedNotActive {
                user: "alice".into()
            }
        );
        assert_eq!(
            membership_from(not, GROUPS, "bob"),
            Membership::NotMember { user: "bob".into() }
        );
        assert_eq!(
            membership_from(not, "root:x:0:\n", "bob"),
            Membership::NoGroup
        );
    }

    #[test]
    fn the_hint_names_the_group_and_the_command() {
        let hint = group_hint(&Membership::NotMember { user: "bob".into() }).unwrap();
        assert!(hint.contains("`dps-station` group"), "{hint}");
        assert!(hint.contains("sudo usermod -aG dps-station bob"), "{hint}");
        let hint = group_hint(&Membership::AddedNotActive { user: "al".into() }).unwrap();
        assert!(hint.contains("sign out and in again"), "{hint}");
        assert_eq!(group_hint(&Membership::Member), None);
        assert!(looks_like_access_denied(
            "cannot open /dev/ttyUSB0: Permission denied (os error 13)"
        ));
        assert!(!looks_like_access_denied("no such file"));
    }
}
