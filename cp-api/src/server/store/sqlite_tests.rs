use super::*;
use crate::server::store::{NewPolicyVersion, StoreError, StoredFile};

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

#[tokio::test]
async fn versions_are_kept_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.db");
    let store = SqliteStore::open(&path).await.unwrap();
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
    let store = SqliteStore::open(&path).await.unwrap();
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

#[tokio::test]
async fn a_stale_expected_version_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
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

#[tokio::test]
async fn join_tokens_are_single_use_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("cp.db")).await.unwrap());
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

#[tokio::test]
async fn operator_tokens_are_found_by_hash_and_replaced_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
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

#[tokio::test]
async fn members_are_kept_replaced_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.db");
    let store = SqliteStore::open(&path).await.unwrap();
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
    };
    store.put_member(member("a", "127.0.0.1:1")).await.unwrap();
    store.put_member(member("b", "127.0.0.1:2")).await.unwrap();
    // Registering again replaces.
    store.put_member(member("a", "127.0.0.1:3")).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.members().await.unwrap(),
        [member("a", "127.0.0.1:3"), member("b", "127.0.0.1:2")]
    );
    store
        .remove_members(vec!["b".to_owned(), "unknown".to_owned()])
        .await
        .unwrap();
    assert_eq!(store.members().await.unwrap(), [member("a", "127.0.0.1:3")]);
}

#[tokio::test]
async fn the_database_and_its_wal_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.db");
    let store = SqliteStore::open(&path).await.unwrap();
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

#[tokio::test]
async fn service_labels_are_kept_replaced_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
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

#[tokio::test]
async fn a_version_keeps_its_gate_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
    let v = store
        .apply_policies(version(&[("a.cedar", "")], Some(0)))
        .await
        .expect("apply");
    let (meta, _) = store.policy_version(v).await.expect("read");
    assert_eq!((meta.widened, meta.narrowed), (Some(1), Some(0)));
}
