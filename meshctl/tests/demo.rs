//! `meshctl demo`, as the README's first command runs it (bounded by `--duration`): a control
//! plane, three apps behind joined proxies, the demo policies, traffic allowed and denied.

use std::process::Command;

#[test]
fn the_demo_mesh_allows_and_denies_by_policy_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["demo", "--duration", "4s", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("denied by frontend-never-calls-payments"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed by cart-charges-payments"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed by frontend-reads-cart"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every flow was decided as the policies say"),
        "{stdout}"
    );
    // The cart's v2 canary takes its share, and the injected fault shows as such (the demo's
    // own check has already held them to their bounds).
    assert!(stdout.contains("cart v2 canary at 10 %"), "{stdout}");
    let summary = stdout
        .rsplit("traffic after")
        .next()
        .expect("a traffic summary");
    let checkout = summary
        .lines()
        .find(|l| l.contains("frontend -> cart checkout"))
        .expect("the checkout flow");
    assert!(
        checkout.contains("served by v1") && checkout.contains("v2"),
        "{checkout}"
    );
    assert!(
        checkout.contains("injected faults (503, x-signet-error: injected)"),
        "{checkout}"
    );
    let cart = summary
        .lines()
        .find(|l| l.contains("frontend -> cart ") && !l.contains("checkout"))
        .expect("the cart flow");
    assert!(!cart.contains("injected"), "{cart}");
    assert!(stdout.contains("meshctl identity inspect cart"), "{stdout}");
    assert!(stdout.contains("signed and verified"), "{stdout}");
    // Everything it started has stopped: the control plane's port is free again.
    let log = std::fs::read_to_string(data.join("logs").join("signet-cp.log")).unwrap();
    assert!(log.contains("stopped"), "{log}");

    // The proxies' audit trails verify on their own...
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .args(["audit", "verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("OK   ") && text.contains("sa/payments"),
        "{text}"
    );

    // Forensics on the files alone: the newest denials, from the spools.
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args([
            "audit",
            "tail",
            "--decision",
            "deny",
            "-n",
            "3",
            "-o",
            "json",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = tail["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    for r in records {
        assert_eq!(r["decision"], "deny");
        assert_eq!(r["resource"], "payments");
        assert_eq!(r["policies"], "frontend-never-calls-payments");
    }

    // ...exported from the files as the SIEM formats, each record once...
    let export = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .args(["audit", "export"])
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let jsonl = dir.path().join("export.jsonl");
    let out = export(&["--format", "jsonl", "--output", jsonl.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<String> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        stderr.contains(&format!("exported {} records", lines.len())),
        "{stderr}"
    );
    let mut keys = std::collections::BTreeSet::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        keys.insert((v["writer"].as_str().unwrap().to_owned(), v["seq"].as_u64()));
    }
    assert_eq!(keys.len(), lines.len(), "no record twice");
    assert!(
        // A proxy writes as one instance of its identity: `<SPIFFE ID>#<instance>`.
        keys.iter()
            .any(|(w, _)| w.split('#').next().unwrap().ends_with("sa/payments")),
        "{keys:?}"
    );
    // The exported lines are the spools' own bytes: each one is in a segment file.
    let mut spooled = String::new();
    let mut dirs = vec![data.clone()];
    while let Some(d) = dirs.pop() {
        for path in std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "jsonl") {
                spooled.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let on_disk: std::collections::HashSet<&str> = spooled.lines().collect();
    for line in &lines {
        assert!(on_disk.contains(line.as_str()), "not in any spool: {line}");
    }
    let ocsf = dir.path().join("export.ocsf.jsonl");
    let out = export(&["--format", "ocsf", "--output", ocsf.to_str().unwrap()]);
    assert!(out.status.success());
    let checked = signet_tests::validators::ocsf(&ocsf);
    assert!(checked.ok, "{}", checked.report);
    // A window in the future holds nothing; a cursor has no meaning for files, so it is
    // refused before anything is written.
    let empty = dir.path().join("empty.jsonl");
    let out = export(&[
        "--format",
        "jsonl",
        "--since",
        "2500-01-01T00:00:00Z",
        "--output",
        empty.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&empty).unwrap_or_default(), "");
    let out = export(&[
        "--format",
        "jsonl",
        "--until",
        "2999-01-01T00:00:00Z",
        "--output",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("outside 1970 to 2554"), "{stderr}");
    let refused = dir.path().join("refused.jsonl");
    let out = export(&[
        "--format",
        "jsonl",
        "--cursor",
        dir.path().join("c").to_str().unwrap(),
        "--output",
        refused.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("--cursor"),
        "{stderr}"
    );
    assert!(!refused.exists());

    // ...and a decision turned from deny to allow in a copy is found, at its line.
    let spool = data.join("payments").join("state").join("audit");
    let segment = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let original = std::fs::read_to_string(&segment).unwrap();
    // Given as files (the bundle found beside their directory), the untouched segment
    // verifies too.
    let by_file = |segment: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .args(["audit", "verify"])
            .arg(segment)
            .output()
            .unwrap()
    };
    let out = by_file(&segment);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("OK   ") && text.contains("sa/payments"),
        "{text}"
    );
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let (n, line) = lines
        .iter()
        .enumerate()
        .find(|(_, l)| l.contains("\"decision\":\"deny\""))
        .map(|(n, l)| (n, l.clone()))
        .unwrap();
    lines[n] = line.replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
    std::fs::write(&segment, lines.join("\n") + "\n").unwrap();
    let out = verify();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("ALTERED {}:{}", segment.display(), n + 1)),
        "{text}"
    );
    let out = by_file(&segment);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("ALTERED {}:{}", segment.display(), n + 1)),
        "{text}"
    );
}

#[test]
fn the_demo_says_what_to_build_when_a_binary_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let lonely = dir.path().join("meshctl");
    std::fs::copy(env!("CARGO_BIN_EXE_meshctl"), &lonely).unwrap();
    let out = Command::new(&lonely)
        .args(["demo", "--duration", "1s"])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
}

/// The `meshctl.env` settings of a running demo, once it has written them.
#[expect(clippy::panic, reason = "test helper: no settings is the test failing")]
fn demo_env(data: &std::path::Path) -> Vec<(String, String)> {
    let file = data.join("cp").join("meshctl.env");
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(&file)
            && text.contains("SIGNET_TOKEN")
        {
            return text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the demo wrote no {}", file.display());
}

#[test]
fn identity_inspect_tells_which_requests_each_caller_may_make() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let demo = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["demo", "--duration", "12s", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let env = demo_env(&data);
    let inspect = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
        command
            .args(["identity", "inspect", "payments", "-o", "json"])
            .env("XDG_CONFIG_HOME", dir.path());
        for (k, v) in &env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap())
    };
    // Until every proxy of the demo has registered.
    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        if let Some(r) = inspect() {
            report = r;
            if report["authorization"]["inbound"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
            {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let inbound = report["authorization"]["inbound"]
        .as_array()
        .unwrap()
        .clone();
    let caller = |name: &str| {
        inbound
            .iter()
            .find(|c| c["spiffe_id"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no caller {name}: {report}"))
            .clone()
    };
    let action = |c: &serde_json::Value, name: &str| {
        c["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"] == name)
            .unwrap_or_else(|| panic!("no action {name}: {c}"))
            .clone()
    };
    // The frontend may connect, and every request it could make is forbidden.
    let frontend = caller("/frontend");
    assert_eq!(action(&frontend, "connect")["decision"], "allow");
    for group in ["read", "write"] {
        let a = action(&frontend, group);
        assert_eq!(a["decision"], "deny", "{a}");
        assert_eq!(a["policies"][0], "frontend-never-calls-payments", "{a}");
    }
    // The cart may POST to the gRPC method only.
    let post = action(&caller("/cart"), "POST");
    assert_eq!(post["decision"], "depends", "{post}");
    assert_eq!(post["allowed"][0]["path"], "/demo.Payments/Call", "{post}");
    assert_eq!(
        post["allowed"][0]["policies"][0], "cart-charges-payments",
        "{post}"
    );
    let out = demo.wait_with_output().unwrap();
    assert!(out.status.success());
}

/// The processes whose command line names `dir` (the demo's control plane and proxies).
fn processes_under(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

#[test]
fn a_sigterm_stops_the_demo_and_every_process_it_started() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(["demo", "--duration", "120s", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = demo.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    // Until every process is up.
    for line in lines.by_ref() {
        if line.unwrap().contains("Ctrl-C stops everything") {
            break;
        }
    }
    let started = processes_under(&data);
    // A control plane and four proxies (the demo's apps run inside meshctl).
    assert!(started.len() >= 5, "{started:?}");
    // As a supervisor or `timeout` stops it: SIGTERM to meshctl alone, whose children run
    // in their own process group.
    let status = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::spawn(move || lines.for_each(drop));
    let exit = demo.wait().unwrap();
    assert!(exit.success(), "{exit}");
    let left = processes_under(&data);
    for pid in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    assert!(
        left.is_empty(),
        "still running after the demo stopped: {left:?}"
    );
}
