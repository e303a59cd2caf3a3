//! A child process of the demo: its first stdout line is the JSON announcement of what it
//! bound; its stderr goes to a log file.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde_json::Value;

/// A running child.
pub(super) struct Process {
    child: Child,
    name: String,
    lines: mpsc::Receiver<String>,
    log: std::path::PathBuf,
}

impl Process {
    /// Starts `bin` with `args`, its stderr appended to `log`.
    pub(super) fn start(bin: &Path, args: &[&std::ffi::OsStr], log: &Path) -> anyhow::Result<Self> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating `{}`", log.display()))?;
        // Its own process group: Ctrl-C reaches meshctl alone, which then stops the children
        // in order (proxies drain) instead of everything dying at once mid-request.
        let mut child = Command::new(bin)
            .process_group(0)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting `{}`", bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from `{}`", bin.display()))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            child,
            name: bin
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            lines,
            log: log.to_path_buf(),
        })
    }

    /// The first stdout line, as JSON.
    pub(super) fn first_line(&mut self, within: Duration) -> anyhow::Result<Value> {
        let line = self.lines.recv_timeout(within).map_err(|_| {
            let tail = std::fs::read_to_string(&self.log)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            anyhow!(
                "{} did not start: {tail} (log: {})",
                self.name,
                self.log.display()
            )
        })?;
        serde_json::from_str(&line).with_context(|| format!("{} printed `{line}`", self.name))
    }

    /// SIGTERM, a few seconds to drain, then kill.
    pub(super) fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
    }
}
