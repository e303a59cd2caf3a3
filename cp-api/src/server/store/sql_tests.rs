//! One conformance suite for every SQL backend: each case runs on a SQLite file (a test of its
//! own) and on a real PostgreSQL server (one test running every case, each on a fresh
//! database of one cluster, so the cluster is made once).

use super::*;
use crate::server::store::{
    AuditQuery, AuditRow, DenyEntry, IssuedCertificate, NewPolicyVersion, NewShadow,
    OperatorAction, StoreError, StoredFile,
};

/// Where a case's store lives; [`Backend::open`] again is a restart of the control plane.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn open(&self) -> SqlStore {
        match self {
            Backend::Sqlite(dir) => SqlStore::open(&dir.path().join("cp.db")).await.unwrap(),
            Backend::Postgres(url) => SqlStore::open_url(url).await.unwrap(),
        }
    }
}

/// Each case as a SQLite test, and all of them in one PostgreSQL test.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&super::Backend::sqlite()).await;
                }
            )*
        }

        #[tokio::test]
        async fn every_case_on_postgres() {
            let server = signet_tests::postgres::Postgres::start();
            $(
                eprintln!("postgres: {}", stringify!($case));
                $case(&Backend::Postgres(server.database())).await;
            )*
        }
    };
}

conformance!(
    versions_are_kept_and_reopened,
    a_stale_expected_version_applies_nothing,
    join_tokens_are_single_use_in_the_database,
    operator_tokens_are_found_by_hash_and_replaced_by_name,
    members_are_kept_replaced_and_forgotten,
    service_labels_are_kept_replaced_and_removed,
    workload_selectors_are_kept_replaced_and_removed,
    federations_are_added_once_updated_and_removed,
    a_version_keeps_its_gate_summary,
    audit_records_are_indexed_once_and_found_by_every_filter,
    shadow_candidates_replace_each_other_and_report_their_flows,
    deny_entries_certificates_and_actions_are_kept,
    authn_and_traffic_versions_count_up_and_keys_are_replaced,
    the_change_feed_moves_with_every_write_replicas_follow,
    replicas_renew_their_rows_and_are_listed_while_seen,
    the_ca_row_is_written_by_compare_and_swap,
    a_duty_has_one_holder_until_its_lease_lapses,
);

async fn the_ca_row_is_written_by_compare_and_swap(backend: &Backend) {
    use crate::server::store::CaWrite;
    let store = backend.open().await;
    assert_eq!(store.ca().await.unwrap(), None);
    let write = |expected: Option<u64>, sealed: &[u8], issued_until: Option<u64>| CaWrite {
        expected,
        trust_domain: "t.test".to_owned(),
        kek_id: "00ff".to_owned(),
        sealed: sealed.to_vec(),
        issued_until,
    };
    let mut seen = store.latest_change().await.unwrap();
    assert_eq!(
        store
            .put_ca(write(None, b"\x00first\xff", Some(5)))
            .await
            .unwrap(),
        1
    );
    assert!(
        store.latest_change().await.unwrap() > seen,
        "followers hear of it"
    );
    seen = store.latest_change().await.unwrap();
    // A second first write (another replica starting) loses.
    assert!(matches!(
        store.put_ca(write(None, b"other", None)).await,
        Err(StoreError::Raced(_))
    ));
    let row = store.ca().await.unwrap().unwrap();
    assert_eq!(
        (
            row.revision,
            row.sealed.as_slice(),
            row.issued_until,
            row.kek_id.as_str()
        ),
        (1, b"\x00first\xff".as_slice(), 5, "00ff")
    );
    // The horizon only rises, and a write without one keeps it.
    store.raise_ca_horizon(9).await.unwrap();
    store.raise_ca_horizon(7).await.unwrap();
    assert_eq!(
        store.put_ca(write(Some(1), b"second", None)).await.unwrap(),
        2
    );
    assert_eq!(store.ca().await.unwrap().unwrap().issued_until, 9);
    // A stale revision writes nothing.
    assert!(matches!(
        store.put_ca(write(Some(1), b"stale", Some(0))).await,
        Err(StoreError::Raced(_))
    ));
    assert_eq!(
        store
            .put_ca(write(Some(2), b"third", Some(0)))
            .await
            .unwrap(),
        3
    );
    let row = store.ca().await.unwrap().unwrap();
    assert_eq!(
        (row.revision, row.sealed.as_slice(), row.issued_until),
        (3, b"third".as_slice(), 0)
    );
    assert!(store.latest_change().await.unwrap() > seen);
}

async fn a_duty_has_one_holder_until_its_lease_lapses(backend: &Backend) {
    let store = backend.open().await;
    let long = Duration::from_secs(60);
    assert!(store.take_duty("ca-rotation", "r1", long).await.unwrap());
    assert!(
        !store.take_duty("ca-rotation", "r2", long).await.unwrap(),
        "held"
    );
    assert!(
        store
            .take_duty("registry-expiry", "r2", long)
            .await
            .unwrap(),
        "another duty"
    );
    // Renewing keeps when the holder took it.
    let since = store.duties().await.unwrap()[0].since;
    assert!(store.take_duty("ca-rotation", "r1", long).await.unwrap());
    let duties = store.duties().await.unwrap();
    assert_eq!(
        duties
            .iter()
            .map(|d| (d.name.as_str(), d.holder.as_str()))
            .collect::<Vec<_>>(),
        [("ca-rotation", "r1"), ("registry-expiry", "r2")]
    );
    assert_eq!(duties[0].since, since);
    // A lapsed lease passes to whoever asks next.
    assert!(
        store
            .take_duty("ca-rotation", "r1", Duration::ZERO)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        store.take_duty("ca-rotation", "r2", long).await.unwrap(),
        "lapsed"
    );
    assert!(!store.take_duty("ca-rotation", "r1", long).await.unwrap());
    // A replica stopping gives its duties up at once.
    store.release_duties("r2").await.unwrap();
    assert!(store.duties().await.unwrap().is_empty());
    assert!(store.take_duty("ca-rotation", "r1", long).await.unwrap());
}

fn version(files: &[(&str, &str)], expected: Option<u64>) -> NewPolicyVersion {
    NewPolicyVersion {
        hash: format!("hash-{}", files.len()),
        policies: files.len() as u64,
        author: "spiffe://t.test/signet/operator/admin".to_owned(),
        message: String::new(),
        rolled_back_from: None,
        files: files
            .iter()
            .map(|(n, t)| StoredFile {
                name: (*n).to_owned(),
                text: (*t).to_owned(),
            })
            .collect(),
        expected,
        widened: Some(1),
        narrowed: Some(0),
    }
}

async fn versions_are_kept_and_reopened(backend: &Backend) {
    let store = backend.open().await;
    assert!(store.latest_policies().await.unwrap().is_none());
    let v1 = store
        .apply_policies(version(&[("a.cedar", "A")], Some(0)))
        .await
        .unwrap();
    let v2 = store
        .apply_policies(version(&[("a.cedar", "A2"), ("b.cedar", "B")], Some(1)))
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    drop(store);

    // Reopening runs no migration twice and finds everything.
    let store = backend.open().await;
    let (meta, files) = store.latest_policies().await.unwrap().unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].name, "b.cedar");
    let history = store.policy_history().await.unwrap();
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    let (_, old) = store.policy_version(1).await.unwrap();
    assert_eq!(old[0].text, "A");
    assert!(matches!(
        store.policy_version(9).await,
        Err(StoreError::NoSuchVersion(9))
    ));
}

async fn a_stale_expected_version_applies_nothing(backend: &Backend) {
    let store = backend.open().await;
    store
        .apply_policies(version(&[("a.cedar", "A")], Some(0)))
        .await
        .unwrap();
    let err = store
        .apply_policies(version(&[("b.cedar", "B")], Some(0)))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::Conflict {
            expected: 0,
            latest: 1
        }
    ));
    assert_eq!(store.policy_history().await.unwrap().len(), 1);
}

async fn join_tokens_are_single_use_in_the_database(backend: &Backend) {
    let store = std::sync::Arc::new(backend.open().await);
    let tokens = signet_ca::JoinTokens::new(crate::server::identity::Tokens(store.clone()));
    let id: SpiffeId = "spiffe://t.test/ns/shop/sa/cart".parse().unwrap();
    let new = tokens
        .create(id.clone(), std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(tokens.redeem(&new.token).await.unwrap(), id);
    assert_eq!(
        tokens.redeem(&new.token).await.unwrap_err(),
        signet_ca::TokenError::AlreadyUsed
    );
}

async fn operator_tokens_are_found_by_hash_and_replaced_by_name(backend: &Backend) {
    let store = backend.open().await;
    store
        .put_operator_token("admin", "spiffe://t.test/signet/operator/admin", [1; 32])
        .await
        .unwrap();
    store
        .put_operator_token("admin", "spiffe://t.test/signet/operator/admin", [2; 32])
        .await
        .unwrap();
    assert_eq!(store.operator_for_token([1; 32]).await.unwrap(), None);
    assert_eq!(
        store.operator_for_token([2; 32]).await.unwrap().as_deref(),
        Some("spiffe://t.test/signet/operator/admin")
    );
}

async fn members_are_kept_replaced_and_forgotten(backend: &Backend) {
    let store = backend.open().await;
    let member = |instance: &str, endpoint: &str| Member {
        instance: instance.to_owned(),
        spiffe_id: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
        service: "cart".to_owned(),
        namespace: "shop".to_owned(),
        endpoint: endpoint.to_owned(),
        // Kept across restarts like the rest.
        weight: if instance == "a" { 300 } else { 100 },
        labels: if instance == "a" {
            [("version".to_owned(), "v2".to_owned())].into()
        } else {
            Default::default()
        },
        service_address: (instance == "a").then(|| "127.0.0.1:8080".parse().unwrap()),
        admin: String::new(),
        serial: "0a".to_owned(),
        registered_at: 1_700_000_000_000,
        last_seen: 1_700_000_000_000,
        app_health: 0,
        trust_bundle: 0,
    };
    store.put_member(member("a", "127.0.0.1:1")).await.unwrap();
    store.put_member(member("b", "127.0.0.1:2")).await.unwrap();
    // Registering again replaces.
    store.put_member(member("a", "127.0.0.1:3")).await.unwrap();
    drop(store);
    let store = backend.open().await;
    assert_eq!(
        store.members().await.unwrap(),
        [member("a", "127.0.0.1:3"), member("b", "127.0.0.1:2")]
    );
    store
        .remove_members(vec!["b".to_owned(), "unknown".to_owned()], i64::MAX)
        .await
        .unwrap();
    assert_eq!(store.members().await.unwrap(), [member("a", "127.0.0.1:3")]);
    // Leases: a heartbeat (at any replica) renews one, never backwards; a replica forgets a
    // member only if its lease lapsed, so another replica's live member survives.
    let lease = |at: i64, app_health: i32| crate::server::store::Lease {
        instance: "a".to_owned(),
        at,
        app_health,
        trust_bundle: u64::try_from(app_health).unwrap() + 10,
    };
    store
        .renew_members(vec![lease(1_700_000_005_000, 1)])
        .await
        .unwrap();
    store
        .renew_members(vec![lease(1_700_000_001_000, 2)])
        .await
        .unwrap();
    let kept = store.members().await.unwrap();
    assert_eq!(
        (kept[0].last_seen, kept[0].app_health, kept[0].trust_bundle),
        (1_700_000_005_000, 1, 11)
    );
    store
        .remove_members(vec!["a".to_owned()], 1_700_000_004_000)
        .await
        .unwrap();
    assert_eq!(
        store.members().await.unwrap().len(),
        1,
        "renewed since the cutoff"
    );
    store
        .remove_members(vec!["a".to_owned()], 1_700_000_006_000)
        .await
        .unwrap();
    assert!(store.members().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_database_and_its_wal_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.db");
    let store = SqlStore::open(&path).await.unwrap();
    store
        .apply_policies(version(&[("a.cedar", "A")], Some(0)))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        seen.push(entry.file_name().to_string_lossy().into_owned());
        assert_eq!(mode, 0o600, "{:?}", entry.file_name());
    }
    seen.sort();
    assert_eq!(seen, ["cp.db", "cp.db-shm", "cp.db-wal"]);
}

async fn service_labels_are_kept_replaced_and_removed(backend: &Backend) {
    let store = backend.open().await;
    let entry = |labels: &[(&str, &str)]| crate::server::store::ServiceLabels {
        namespace: "shop".into(),
        name: "cart".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        updated_at: 1,
        author: "spiffe://t.test/signet/operator/admin".into(),
    };
    store
        .put_service_labels(entry(&[("tier", "web"), ("env", "prod")]))
        .await
        .expect("put");
    store
        .put_service_labels(entry(&[("tier", "api")]))
        .await
        .expect("replace");
    let kept = store.service_labels().await.expect("read");
    assert_eq!(kept, [entry(&[("tier", "api")])]);
    store.put_service_labels(entry(&[])).await.expect("remove");
    assert!(store.service_labels().await.expect("read").is_empty());
}

async fn workload_selectors_are_kept_replaced_and_removed(backend: &Backend) {
    let store = backend.open().await;
    let entry = |selectors: &[&str]| crate::server::store::WorkloadSelectors {
        namespace: "shop".into(),
        name: "cart".into(),
        selectors: selectors.iter().map(|s| (*s).to_owned()).collect(),
        updated_at: 1,
        author: "spiffe://t.test/signet/operator/admin".into(),
    };
    let before = store.latest_change().await.expect("feed");
    store
        .put_workload_selectors(entry(&["unix:uid:1000", "unix:path:/usr/bin/cart"]))
        .await
        .expect("put");
    store
        .put_workload_selectors(entry(&["unix:uid:1001"]))
        .await
        .expect("replace");
    assert_eq!(
        store.workload_selectors().await.expect("read"),
        [entry(&["unix:uid:1001"])]
    );
    let after = store.latest_change().await.expect("feed");
    assert!(after > before, "replicas hear of it");
    store
        .put_workload_selectors(entry(&[]))
        .await
        .expect("remove");
    assert!(store.workload_selectors().await.expect("read").is_empty());
}

async fn federations_are_added_once_updated_and_removed(backend: &Backend) {
    let store = backend.open().await;
    let entry = |bundle: &str| crate::server::store::Federation {
        trust_domain: "partner.example".into(),
        endpoint: "https://127.0.0.1:8443/".into(),
        profile: "https_spiffe".into(),
        endpoint_spiffe_id: "spiffe://partner.example/signet/control-plane".into(),
        endpoint_ca: String::new(),
        bundle: bundle.into(),
        refreshed_at: 0,
        next_refresh: 5,
        last_error: String::new(),
        created_at: 1,
        author: "spiffe://t.test/signet/operator/admin".into(),
    };
    store
        .put_federation(entry("{\"keys\":[]}"), true)
        .await
        .expect("add");
    assert!(matches!(
        store.put_federation(entry("{}"), true).await,
        Err(StoreError::Raced(_))
    ));
    let before = store.latest_change().await.expect("feed");
    store
        .put_federation(entry("{\"keys\":[1]}"), false)
        .await
        .expect("update");
    assert!(store.latest_change().await.expect("feed") > before);
    assert_eq!(
        store.federations().await.expect("read"),
        [entry("{\"keys\":[1]}")]
    );
    assert!(
        store
            .remove_federation("partner.example")
            .await
            .expect("remove")
    );
    assert!(
        !store
            .remove_federation("partner.example")
            .await
            .expect("again")
    );
    assert!(matches!(
        store.put_federation(entry("{}"), false).await,
        Err(StoreError::Raced(_))
    ));
    assert!(store.federations().await.expect("read").is_empty());
}

async fn a_version_keeps_its_gate_summary(backend: &Backend) {
    let store = backend.open().await;
    let v = store
        .apply_policies(version(&[("a.cedar", "")], Some(0)))
        .await
        .expect("apply");
    let (meta, _) = store.policy_version(v).await.expect("read");
    assert_eq!((meta.widened, meta.narrowed), (Some(1), Some(0)));
}

fn audit_row(writer: &str, seq: u64, decision: &str, principal: &str, policies: &str) -> AuditRow {
    AuditRow {
        id: 0,
        writer: writer.to_owned(),
        seq,
        time: 1_000 + seq,
        kind: "request".to_owned(),
        decision: Some(decision.to_owned()),
        action: Some("GET".to_owned()),
        principal: Some(principal.to_owned()),
        resource: Some("cart".to_owned()),
        path: Some("/api".to_owned()),
        policies: Some(policies.to_owned()),
        candidate: None,
        line: format!("{{\"seq\":{seq}}}"),
    }
}

async fn audit_records_are_indexed_once_and_found_by_every_filter(backend: &Backend) {
    let store = backend.open().await;
    let rows = vec![
        audit_row("w1", 1, "allow", "frontend", "reads"),
        audit_row("w1", 2, "deny", "frontend", "never,default-deny"),
        audit_row("w1", 3, "allow", "cart", "reads"),
    ];
    store.index_audit(rows.clone()).await.unwrap();
    // Shipping the same records again (a retry) indexes nothing twice.
    store.index_audit(rows).await.unwrap();
    let all = store.query_audit(AuditQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[1].line, "{\"seq\":2}");
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery::default();
        f(&mut q);
        q
    };
    let seqs = |rows: Vec<AuditRow>| rows.iter().map(|r| r.seq).collect::<Vec<_>>();
    for (query, expected) in [
        (q(|q| q.decision = Some("deny".into())), vec![2]),
        (q(|q| q.principal = Some("cart".into())), vec![3]),
        (q(|q| q.resource = Some("payments".into())), vec![]),
        (q(|q| q.policy = Some("never".into())), vec![2]),
        (q(|q| q.policy = Some("default".into())), vec![]),
        (q(|q| q.since = Some(1_002)), vec![2, 3]),
        (q(|q| q.until = Some(1_001)), vec![1]),
        (
            AuditQuery {
                after: Some(all[0].id),
                ..AuditQuery::default()
            },
            vec![2, 3],
        ),
        (q(|q| q.limit = Some(1)), vec![3]),
        (
            q(|q| {
                q.limit = Some(1);
                q.oldest = true;
            }),
            vec![1],
        ),
    ] {
        assert_eq!(
            seqs(store.query_audit(query.clone()).await.unwrap()),
            expected,
            "{query:?}"
        );
    }
}

async fn shadow_candidates_replace_each_other_and_report_their_flows(backend: &Backend) {
    let store = backend.open().await;
    let new = |hash: &str| NewShadow {
        hash: hash.to_owned(),
        policies: 1,
        author: "spiffe://t.test/signet/operator/admin".to_owned(),
        message: "try".to_owned(),
        files: vec![StoredFile {
            name: "a.cedar".to_owned(),
            text: "A".to_owned(),
        }],
    };
    let first = store.install_shadow(new("h1")).await.unwrap();
    let second = store.install_shadow(new("h2")).await.unwrap();
    assert!(second.id > first.id);
    let current = store.current_shadow().await.unwrap().unwrap();
    assert_eq!((current.id, current.files.len()), (second.id, 1));
    // The first was ended by the second: ending it again changes nothing.
    assert!(!store.end_shadow(first.id, "cleared").await.unwrap());
    let mut rows = Vec::new();
    for seq in 1..=3 {
        let mut row = audit_row("w1", seq, "deny", "frontend", "");
        row.kind = "shadow".to_owned();
        row.candidate = Some("h2".to_owned());
        rows.push(row);
    }
    store.index_audit(rows).await.unwrap();
    let flows = store.shadow_flows("h2", 0, 10).await.unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (flows[0].count, flows[0].first, flows[0].last),
        (3, 1_001, 1_003)
    );
    let examples = store.shadow_examples("h2", 0, 2).await.unwrap();
    assert_eq!(examples.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert!(store.end_shadow(second.id, "cleared").await.unwrap());
    assert!(store.current_shadow().await.unwrap().is_none());
}

async fn deny_entries_certificates_and_actions_are_kept(backend: &Backend) {
    let store = backend.open().await;
    let entry = |reason: &str| DenyEntry {
        kind: "spiffe_id".to_owned(),
        value: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
        reason: reason.to_owned(),
        created_at: 5,
    };
    store.deny(entry("first")).await.unwrap();
    // Denying again replaces the reason.
    store.deny(entry("again")).await.unwrap();
    assert_eq!(store.deny_list().await.unwrap(), [entry("again")]);
    let cert = |serial: &str, issued_at: i64| IssuedCertificate {
        serial: serial.to_owned(),
        spiffe_id: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
        not_before: 1,
        not_after: 2,
        issued_at,
        kind: "issue".to_owned(),
    };
    store.record_certificate(cert("0a", 10)).await.unwrap();
    store.record_certificate(cert("0b", 20)).await.unwrap();
    let kept = store
        .certificates_for("spiffe://t.test/ns/shop/sa/cart", 1)
        .await
        .unwrap();
    assert_eq!(kept, [cert("0b", 20)]);
    for allowed in [true, false] {
        store
            .record_action(OperatorAction {
                id: 0,
                at: 7,
                principal: "spiffe://t.test/signet/operator/admin".to_owned(),
                action: "policy.apply".to_owned(),
                target: "policies".to_owned(),
                allowed,
                detail: String::new(),
            })
            .await
            .unwrap();
    }
    let actions = store.actions(10, None).await.unwrap();
    assert_eq!(
        actions.iter().map(|a| a.allowed).collect::<Vec<_>>(),
        [false, true],
        "newest first"
    );
    let older = store.actions(10, Some(actions[0].id)).await.unwrap();
    assert_eq!(older.len(), 1);
}

async fn authn_and_traffic_versions_count_up_and_keys_are_replaced(backend: &Backend) {
    let store = backend.open().await;
    let author = "spiffe://t.test/signet/operator/admin".to_owned();
    let keys = vec![("corp".to_owned(), "{\"keys\":[]}".to_owned())];
    assert_eq!(
        store
            .put_authn("a".into(), author.clone(), keys.clone())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_authn("b".into(), author.clone(), keys)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.latest_authn().await.unwrap().unwrap().doc, "b");
    store
        .put_authn_key("corp".into(), "{\"keys\":[1]}".into())
        .await
        .unwrap();
    let fetched = store.authn_keys().await.unwrap();
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].jwks, "{\"keys\":[1]}");
    assert_eq!(
        store
            .put_traffic("t1".into(), author.clone(), 3, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_traffic("t2".into(), author.clone(), 1, Some(1))
            .await
            .unwrap(),
        2
    );
    let all = store.traffic_versions(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|t| t.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(all[0].rollback_of, Some(1));
    let one = store.traffic_versions(Some(1), 10).await.unwrap();
    assert_eq!(
        (one.len(), one[0].doc.as_str(), one[0].changes),
        (1, "t1", 3)
    );
}

/// Two replicas on one PostgreSQL database race: to apply a policy version on top of the
/// same one, and to redeem the same join token. Exactly one wins each; the loser of the
/// apply is told the version moved (a 409 at the API).
#[tokio::test]
async fn two_replicas_racing_on_postgres_exactly_one_wins() {
    let server = signet_tests::postgres::Postgres::start();
    let url = server.database();
    let (a, b) = (
        SqlStore::open_url(&url).await.unwrap(),
        SqlStore::open_url(&url).await.unwrap(),
    );
    for round in 0..20u64 {
        let (x, y) = tokio::join!(
            a.apply_policies(version(&[("a.cedar", "A")], Some(round))),
            b.apply_policies(version(&[("b.cedar", "B")], Some(round))),
        );
        let (won, lost) = match (x, y) {
            (Ok(v), Err(e)) | (Err(e), Ok(v)) => (v, e),
            other => panic!("round {round}: {other:?}"),
        };
        assert_eq!(won, round + 1);
        assert!(
            matches!(lost, StoreError::Conflict { latest, .. } if latest == round + 1),
            "round {round}: {lost}"
        );
    }
    let tokens_a =
        signet_ca::JoinTokens::new(crate::server::identity::Tokens(std::sync::Arc::new(a)));
    let tokens_b =
        signet_ca::JoinTokens::new(crate::server::identity::Tokens(std::sync::Arc::new(b)));
    let id: SpiffeId = "spiffe://t.test/ns/shop/sa/cart".parse().unwrap();
    for _ in 0..20 {
        let new = tokens_a
            .create(id.clone(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let (x, y) = tokio::join!(tokens_a.redeem(&new.token), tokens_b.redeem(&new.token));
        assert_eq!(
            usize::from(x.is_ok()) + usize::from(y.is_ok()),
            1,
            "{x:?} {y:?}"
        );
    }
}

async fn the_change_feed_moves_with_every_write_replicas_follow(backend: &Backend) {
    let store = backend.open().await;
    let author = "spiffe://t.test/signet/operator/admin".to_owned();
    let mut seen = store.latest_change().await.unwrap();
    let mut moved = |now: u64, what: &str| {
        assert!(now > seen, "{what} did not move the feed ({seen} -> {now})");
        seen = now;
    };
    store
        .apply_policies(version(&[("a.cedar", "A")], Some(0)))
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "a policy version");
    store
        .deny(DenyEntry {
            kind: "serial".to_owned(),
            value: "0a".to_owned(),
            reason: String::new(),
            created_at: 1,
        })
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "a deny");
    store
        .put_traffic("t".into(), author.clone(), 1, None)
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "traffic");
    store
        .put_authn("a".into(), author.clone(), Vec::new())
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "authn");
    store
        .put_authn_key("corp".into(), "{}".into())
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "a fetched key");
    let labels = crate::server::store::ServiceLabels {
        namespace: "shop".into(),
        name: "cart".into(),
        labels: [("tier".to_owned(), "api".to_owned())].into(),
        updated_at: 1,
        author: author.clone(),
    };
    store.put_service_labels(labels).await.unwrap();
    moved(store.latest_change().await.unwrap(), "labels");
    let shadow = store
        .install_shadow(NewShadow {
            hash: "h".into(),
            policies: 0,
            author: author.clone(),
            message: String::new(),
            files: Vec::new(),
        })
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "a shadow candidate");
    assert!(store.end_shadow(shadow.id, "cleared").await.unwrap());
    moved(store.latest_change().await.unwrap(), "clearing it");
    store
        .put_member(crate::server::store::Member {
            instance: "i".to_owned(),
            spiffe_id: "spiffe://t.test/ns/shop/sa/cart".to_owned(),
            service: "cart".to_owned(),
            namespace: "shop".to_owned(),
            endpoint: "127.0.0.1:1".to_owned(),
            weight: 100,
            labels: Default::default(),
            service_address: None,
            admin: String::new(),
            serial: "0a".to_owned(),
            registered_at: 1,
            last_seen: 1,
            app_health: 0,
            trust_bundle: 0,
        })
        .await
        .unwrap();
    moved(store.latest_change().await.unwrap(), "a registration");
    // What other replicas need not follow leaves the feed alone.
    assert!(!store.end_shadow(shadow.id, "cleared").await.unwrap());
    store
        .index_audit(vec![audit_row("w", 1, "allow", "p", "")])
        .await
        .unwrap();
    assert_eq!(store.latest_change().await.unwrap(), seen);
}

async fn replicas_renew_their_rows_and_are_listed_while_seen(backend: &Backend) {
    let store = backend.open().await;
    store.ping().await.unwrap();
    let row = |id: &str, last_seen: i64| crate::server::store::ReplicaRow {
        id: id.to_owned(),
        grpc: "127.0.0.1:1".to_owned(),
        api: "127.0.0.1:2".to_owned(),
        version: "0.1.0".to_owned(),
        started_at: 10,
        last_seen,
    };
    store.put_replica(row("a", 100)).await.unwrap();
    store.put_replica(row("b", 50)).await.unwrap();
    // Renewing keeps one row per replica.
    store.put_replica(row("a", 200)).await.unwrap();
    assert_eq!(
        store.replicas(0).await.unwrap(),
        [row("a", 200), row("b", 50)]
    );
    assert_eq!(store.replicas(60).await.unwrap(), [row("a", 200)]);
}
