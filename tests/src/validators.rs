//! The export validators built from the standards' own definitions, run on a file:
//! - OCSF: `tests/ocsf/validate.py` (JSON Schema generated offline from the OCSF release by
//!   the `ocsf-json-schema` package, checked by `jsonschema`);
//! - ECS: `tests/ecs/validate.js` (Elastic's `EcsFlat` field table from the `@elastic/ecs`
//!   package, run by Node.js).
//!
//! `./scripts/test.sh` installs what they need.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a validator said: whether everything passed, and its report.
#[derive(Debug)]
pub struct Verdict {
    /// Exit status zero.
    pub ok: bool,
    /// Standard output and error.
    pub report: String,
}

fn script(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(mut command: Command, file: &Path) -> Verdict {
    let checked = command
        .arg(file)
        .output()
        .expect("the validator runs (./scripts/test.sh installs what it needs)");
    Verdict {
        ok: checked.status.success(),
        report: format!(
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ),
    }
}

/// Checks OCSF events, one per line.
pub fn ocsf(file: &Path) -> Verdict {
    let mut python = Command::new("python3");
    python.arg(script("ocsf/validate.py"));
    run(python, file)
}

/// Where `./scripts/test.sh` unpacks `@elastic/ecs`, unless `SIGNET_ECS_DIR` says otherwise.
fn ecs_definitions() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNET_ECS_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache"),
        PathBuf::from,
    );
    cache.join("signet-tests/elastic-ecs-9.4.0/package")
}

/// Checks an Elasticsearch bulk file (action and document lines) against ECS.
pub fn ecs(file: &Path) -> Verdict {
    let mut node = Command::new("node");
    node.arg(script("ecs/validate.js"))
        .env("SIGNET_ECS_DIR", ecs_definitions());
    run(node, file)
}
