//! Who is calling on the Workload API socket: the kernel's word for the connecting process
//! (`SO_PEERCRED`: uid, gid, pid) and the executable behind the pid, matched against the
//! selectors the operator configured for this service. Every selector must match, as a
//! SPIRE registration entry's do.

use std::path::PathBuf;

/// One condition on the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `unix:uid:1000`
    Uid(u32),
    /// `unix:gid:1000` (the process's primary group, as the kernel reports it).
    Gid(u32),
    /// `unix:path:/usr/local/bin/app` (the executable's path, symlinks resolved).
    Path(PathBuf),
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "selector `{text}`: expected unix:uid:N, unix:gid:N or unix:path:/ABSOLUTE/PATH"
            )
        };
        let rest = text.strip_prefix("unix:").ok_or_else(bad)?;
        let (kind, value) = rest.split_once(':').ok_or_else(bad)?;
        match kind {
            "uid" => value.parse().map(Selector::Uid).map_err(|_| bad()),
            "gid" => value.parse().map(Selector::Gid).map_err(|_| bad()),
            "path" if value.starts_with('/') => Ok(Selector::Path(PathBuf::from(value))),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Selector::Uid(uid) => write!(f, "unix:uid:{uid}"),
            Selector::Gid(gid) => write!(f, "unix:gid:{gid}"),
            Selector::Path(path) => write!(f, "unix:path:{}", path.display()),
        }
    }
}

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
