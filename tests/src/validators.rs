//! The export validators built from the standards' own definitions, run on a file:
//! - OCSF: `tests/ocsf/validate.py` (JSON Schema generated offline from the OCSF release by
//!   the `ocsf-json-schema` package, checked by `jsonschema`);
//! - ECS: `tests/ecs/validate.js` (Elastic's `EcsFlat` field table from the `@elastic/ecs`
//!   package, run by Node.js);
//! - CEF: liblognorm's ArcSight CEF parser (rsyslog's normalization library, Debian's
//!   `lognormalizer`), which unescapes headers and extensions as the CEF standard says.
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

/// Parses CEF events, one per line of `lines`, with liblognorm's CEF parser: for each line
/// its header (`DeviceVendor`, `DeviceProduct`, `DeviceVersion`, `SignatureID`, `Name`,
/// `Severity`) and `Extensions`, unescaped; an error naming the lines it could not parse.
///
/// liblognorm 2.0.6 (Debian 12) drops the first character of the first extension key when
/// nothing separates it from the header's last `|` (rsyslog/liblognorm#363, fixed upstream
/// later); each line is given one space there, which CEF parsers skip, before parsing.
pub fn cef(lines: &str) -> Result<Vec<serde_json::Value>, String> {
    use std::io::Write as _;
    let input: String = lines
        .lines()
        .map(|l| {
            let at = header_end(l).unwrap_or(l.len());
            format!("{} {}\n", &l[..at], &l[at..])
        })
        .collect();
    let mut child = Command::new("lognormalizer")
        .args(["-e", "json", "-r"])
        .arg(script("cef/cef.rulebase"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lognormalizer runs (./scripts/test.sh installs liblognorm-utils)");
    // Fed from a thread of its own: a large input would otherwise fill both pipes while
    // lognormalizer waits for its output to be read.
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("lognormalizer finishes");
    feeder
        .join()
        .expect("the feeder thread")
        .expect("lognormalizer reads its input");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parsed = Vec::new();
    let mut refused = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("lognormalizer said `{line}`: {e}"))?;
        match v.get("cef") {
            Some(event) => parsed.push(event.clone()),
            None => refused.push(format!("line {}: {line}", n + 1)),
        }
    }
    if !out.status.success() || !refused.is_empty() {
        return Err(format!(
            "liblognorm did not parse every event as CEF:\n{}{}",
            refused.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(parsed)
}

/// The byte offset just past a CEF line's seventh unescaped `|` (the end of its header).
fn header_end(line: &str) -> Option<usize> {
    let mut bars = 0;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '|' => {
                bars += 1;
                if bars == 7 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Checks a Prometheus text exposition with `promtool check metrics` (Debian's `prometheus`
/// package): its format and the naming lints.
pub fn promtool_metrics(text: &str) -> Verdict {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (./scripts/test.sh installs it)");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().expect("promtool finishes");
    Verdict {
        ok: out.status.success(),
        report: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
