//! Unix workload selectors: the conditions a process calling a proxy's Workload API must
//! meet to be given its service's identity (every one of a service's selectors must hold,
//! as a SPIRE registration entry's do). Operators write them as text (`unix:uid:1000`); the
//! proxy matches them against the kernel's word for the caller.

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
