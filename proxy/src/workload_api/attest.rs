//! Who is calling on the Workload API socket: the kernel's word for the connecting process
//! (`SO_PEERCRED`: uid, gid, pid) and the executable behind the pid, matched against the
//! selectors the operator configured for this service. Every selector must match, as a
//! SPIRE registration entry's do.

use std::path::PathBuf;

pub use signet_spiffe::selector::Selector;

/// The calling process, as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// `/proc/<pid>/exe`, when it could be read.
    pub exe: Option<PathBuf>,
}

impl Caller {
    /// From a connection's peer credentials.
    pub fn from_credentials(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        let exe = pid.and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok());
        Self { uid, gid, pid, exe }
    }

    /// Whether every one of `selectors` holds for this caller (none configured: nobody).
    pub fn matches(&self, selectors: &[Selector]) -> bool {
        !selectors.is_empty()
            && selectors.iter().all(|s| match s {
                Selector::Uid(uid) => self.uid == *uid,
                Selector::Gid(gid) => self.gid == *gid,
                Selector::Path(path) => self.exe.as_ref() == Some(path),
            })
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid {pid}")?;
        }
        if let Some(exe) = &self.exe {
            write!(f, " exe {}", exe.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_print_and_must_all_match() {
        let parsed: Vec<Selector> = ["unix:uid:1000", "unix:gid:50", "unix:path:/usr/bin/app"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            parsed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["unix:uid:1000", "unix:gid:50", "unix:path:/usr/bin/app"]
        );
        for bad in [
            "uid:1",
            "unix:uid:x",
            "unix:path:relative",
            "unix:pid:1",
            "unix:uid",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
        let caller = Caller {
            uid: 1000,
            gid: 50,
            pid: Some(1),
            exe: Some(PathBuf::from("/usr/bin/app")),
        };
        assert!(caller.matches(&parsed));
        assert!(!caller.matches(&[]), "no selectors admit nobody");
        let other_user = Caller {
            uid: 1001,
            ..caller.clone()
        };
        assert!(!other_user.matches(&parsed));
        let other_program = Caller {
            exe: Some(PathBuf::from("/usr/bin/other")),
            ..caller
        };
        assert!(!other_program.matches(&parsed));
    }
}
