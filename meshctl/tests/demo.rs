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

    // ...and a decision turned from deny to allow in a copy is found, at its line.
    let spool = data.join("payments").join("state").join("audit");
    let segment = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let original = std::fs::read_to_string(&segment).unwrap();
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
