//! `/v1/policies`: the applied policies, their history and versions, applying (through the
//! widening gate) and rolling back.

use super::*;

pub(super) async fn current_policies(
    State(api): State<Api>,
    op: Operator,
) -> Result<Json<model::PolicySet>, ApiError> {
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    let applied = api.hub.applied();
    Ok(Json(model::PolicySet {
        version: applied.meta.as_ref().map_or(0, |m| m.version),
        meta: applied.meta.clone(),
        hash: applied.bundle.hash().to_owned(),
        policies: applied.bundle.len() as u64,
        files: applied.files.clone(),
    }))
}

/// `GET /v1/policies/history?limit=N&before=V`: a page of versions, newest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    /// Versions per page (default and most: 1,000).
    #[serde(default)]
    limit: Option<u32>,
    /// Only versions older than this one (the previous page's `next_before`).
    #[serde(default)]
    before: Option<u64>,
}

pub(super) async fn history(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<model::PolicyHistory>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let limit = page_limit(query.limit, 1_000)?;
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    let mut versions = api.hub.store.policy_history().await?;
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    let page: Vec<PolicyVersion> = versions
        .into_iter()
        .filter(|v| query.before.is_none_or(|before| v.version < before))
        .take(limit as usize)
        .collect();
    let next_before = (page.len() == limit as usize)
        .then(|| page.last().map(|v| v.version))
        .flatten();
    Ok(Json(model::PolicyHistory {
        versions: page,
        next_before,
    }))
}

pub(super) async fn policy_version(
    State(api): State<Api>,
    op: Operator,
    Path(version): Path<String>,
) -> Result<Json<model::PolicyVersionFiles>, ApiError> {
    api.authorize(
        &op,
        Act::Read {
            collection: "policies",
        },
    )
    .await?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::bad(format!("`{version}` is not a version number")))?;
    let (meta, files) = api.hub.store.policy_version(version).await?;
    Ok(Json(model::PolicyVersionFiles {
        version: meta.version,
        meta,
        files,
    }))
}

/// How long `apply`, `rollback` and `deny` wait for proxies by default.
pub(super) const DEFAULT_WAIT: Duration = Duration::from_secs(10);

pub(super) fn wait_of(seconds: Option<u64>) -> Duration {
    seconds.map_or(DEFAULT_WAIT, Duration::from_secs)
}

/// Refuses a bundle whose slice for some service could not be sent to its proxies in one
/// configuration message: such a version would be stored and never enforced.
pub(super) fn check_slice_size(bundle: &signet_policy::PolicyBundle) -> Result<(), ApiError> {
    let largest = bundle.largest_slice_bytes();
    if largest > crate::api::MAX_SLICE_BYTES {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "the policies were rejected; nothing was applied".to_owned(),
            problems: vec![format!(
                "one service's share of these policies could reach {largest} bytes; a proxy \
                 can be sent at most {} bytes of policies (split them by service with \
                 `resource == Mesh::Service::\"...\"` or `resource in Mesh::Namespace::\"...\"`)",
                crate::api::MAX_SLICE_BYTES
            )],
        });
    }
    Ok(())
}

/// Parses and validates `files` off the async workers (a large bundle takes seconds, and
/// must not hold up every proxy's heartbeat meanwhile), and checks its slices' size.
pub(super) async fn validated(
    files: Vec<StoredFile>,
    refusal: &str,
) -> Result<(signet_policy::PolicyBundle, Vec<StoredFile>), ApiError> {
    let (parsed, files) = tokio::task::spawn_blocking(move || (bundle_of(&files, 0), files))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let bundle = parsed.map_err(|problems| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: refusal.to_owned(),
        problems: problems.lines().map(str::to_owned).collect(),
    })?;
    check_slice_size(&bundle)?;
    Ok((bundle, files))
}

pub(super) fn check_files(files: &[StoredFile]) -> Result<(), ApiError> {
    if files.is_empty() {
        return Err(ApiError::bad("no policy files given"));
    }
    if files.len() > MAX_FILES {
        return Err(ApiError::bad(format!("at most {MAX_FILES} policy files")));
    }
    let mut names = BTreeSet::new();
    for f in files {
        if f.name.is_empty() || f.name.len() > 256 || f.name.chars().any(char::is_control) {
            return Err(ApiError::bad(format!(
                "bad policy file name `{}`",
                f.name.escape_debug()
            )));
        }
        if !names.insert(&f.name) {
            return Err(ApiError::bad(format!(
                "policy file `{}` given twice",
                f.name
            )));
        }
    }
    Ok(())
}

/// A policy change to store and publish.
pub(super) struct Change {
    pub(super) files: Vec<StoredFile>,
    pub(super) message: String,
    pub(super) expected: Option<u64>,
    pub(super) rolled_back_from: Option<u64>,
    pub(super) wait: Duration,
    /// The operator accepts that the change opens access (`policy.apply_widening` is still
    /// asked).
    pub(super) allow_widening: bool,
}

/// How many changes a refused or dry-run response lists.
pub(super) const GATE_CHANGES_SHOWN: usize = 50;

/// The control plane's own access diff of `new` against what is applied, over its registry
/// (every registered workload and service, `connect` and every HTTP method on every path
/// class the two bundles name). Computed off the async workers.
pub(super) async fn gate(
    api: &Api,
    new: &signet_policy::PolicyBundle,
) -> Result<GateDiff, ApiError> {
    let old = Authorizer::new(Arc::clone(&api.hub.applied().bundle));
    let new = Authorizer::new(Arc::new(new.clone()));
    let inventory = api.hub.inventory();
    tokio::task::spawn_blocking(move || signet_policy::gate_diff(&old, &new, inventory))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub(super) fn gate_model(diff: &GateDiff) -> model::Gate {
    model::Gate {
        checked: diff.checked as u64,
        widened: diff.widened as u64,
        narrowed: diff.narrowed as u64,
        changes: diff
            .changes
            .iter()
            .take(GATE_CHANGES_SHOWN)
            .map(gate_change)
            .collect(),
    }
}

fn gate_change(c: &AccessChange) -> model::GateChange {
    let detail = |d: &signet_policy::Decision| model::DecisionDetail {
        decision: if d.is_allowed() {
            model::Decision::Allow
        } else {
            model::Decision::Deny
        },
        policies: d.policies.clone(),
        errors: d.errors.clone(),
    };
    model::GateChange {
        kind: match c.kind {
            signet_policy::ChangeKind::Widened => model::ChangeKind::Widened,
            signet_policy::ChangeKind::Narrowed => model::ChangeKind::Narrowed,
        },
        principal: c.principal.as_str().to_owned(),
        action: c.action.clone(),
        path: c.path.clone(),
        resource: c.resource.name.clone(),
        namespace: c.resource.namespace.clone(),
        before: detail(&c.before),
        after: detail(&c.after),
    }
}

/// Lets a change through the gate: one that narrows or changes nothing passes; one that
/// widens needs the caller's `allow_widening` and the `policy.apply_widening` permission.
pub(super) async fn pass_gate(
    api: &Api,
    op: &Operator,
    diff: &GateDiff,
    allow_widening: bool,
    rollback: bool,
) -> Result<(), ApiError> {
    if diff.widened == 0 {
        return Ok(());
    }
    if !allow_widening {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "this change widens access ({} decisions newly allowed, {} newly denied); \
                 nothing was applied: send allow_widening (meshctl: --allow-widening) to apply it",
                diff.widened, diff.narrowed
            ),
            problems: diff
                .changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Widened)
                .take(GATE_CHANGES_SHOWN)
                .map(AccessChange::row)
                .collect(),
        });
    }
    api.authorize(
        op,
        Act::PolicyWidening {
            widened: diff.widened as u64,
            narrowed: diff.narrowed as u64,
            rollback,
        },
    )
    .await
}

pub(super) async fn publish(api: &Api, op: &Operator, change: Change) -> ApiResult<model::Applied> {
    let Change {
        files,
        message,
        expected,
        rolled_back_from,
        wait,
        allow_widening,
    } = change;
    let (bundle, files) =
        validated(files, "the policies were rejected; nothing was applied").await?;
    let guard = api.apply_lock.lock().await;
    // Against what is applied now, under the lock: no other change can slip in between the
    // diff and the write.
    let diff = gate(api, &bundle).await?;
    pass_gate(api, op, &diff, allow_widening, rolled_back_from.is_some()).await?;
    let version = api
        .hub
        .store
        .apply_policies(NewPolicyVersion {
            hash: bundle.hash().to_owned(),
            policies: bundle.len() as u64,
            author: op.id.as_str().to_owned(),
            message,
            rolled_back_from,
            files,
            expected,
            widened: Some(diff.widened as u64),
            narrowed: Some(diff.narrowed as u64),
        })
        .await?;
    let (meta, files) = api.hub.store.policy_version(version).await?;
    api.hub.publish_bundle(meta.clone(), bundle, files);
    api.hub.audit.record(signet_audit::Event::Policy(
        signet_audit::record::PolicyEvent {
            version,
            hash: meta.hash.clone(),
            author: op.id.as_str().to_owned(),
            rolled_back_from: meta.rolled_back_from,
            widened: meta.widened,
            narrowed: meta.narrowed,
        },
    ));
    tracing::info!(version, hash = %meta.hash, author = %op.id, "policies applied");
    drop(guard);
    let acks =
        crate::server::acks::wait(&api.hub, wait, |_| true, |p| p.policy_version >= version).await;
    Ok(Json(model::Applied {
        version,
        hash: meta.hash,
        policies: meta.policies,
        gate: gate_model(&diff),
        enforcement: acks.to_model(|p| p.policy_version),
    }))
}

pub(super) async fn apply(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::PolicyApplyRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(rejected)?;
    check_files(&body.files)?;
    api.authorize(
        &op,
        Act::PolicyApply {
            files: body.files.len(),
            dry_run: body.dry_run,
            expected_version: body.expected_version,
        },
    )
    .await?;
    if body.dry_run {
        let (bundle, _) = validated(body.files, "the policies were rejected").await?;
        let diff = gate(&api, &bundle).await?;
        return Ok(Json(model::DryRun {
            dry_run: true,
            hash: bundle.hash().to_owned(),
            policies: bundle.len() as u64,
            gate: gate_model(&diff),
        })
        .into_response());
    }
    publish(
        &api,
        &op,
        Change {
            files: body.files,
            message: body.message,
            expected: body.expected_version,
            rolled_back_from: None,
            wait: wait_of(body.wait_seconds),
            allow_widening: body.allow_widening,
        },
    )
    .await
    .map(IntoResponse::into_response)
}

pub(super) async fn rollback(
    State(api): State<Api>,
    op: Operator,
    body: Result<Json<model::PolicyRollbackRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<model::Applied> {
    let Json(body) = body.map_err(rejected)?;
    rollback_to(&api, &op, body).await
}

/// A rollback as `POST /v1/policies/rollback` and the console make it: authorized, through
/// the widening gate, published, and waited for.
pub(crate) async fn rollback_to(
    api: &Api,
    op: &Operator,
    body: model::PolicyRollbackRequest,
) -> ApiResult<model::Applied> {
    api.authorize(
        op,
        Act::PolicyRollback {
            version: body.version,
            expected_version: body.expected_version,
        },
    )
    .await?;
    let (_, files) = api.hub.store.policy_version(body.version).await?;
    publish(
        api,
        op,
        Change {
            files,
            message: format!("rollback to version {}", body.version),
            expected: body.expected_version,
            rolled_back_from: Some(body.version),
            wait: wait_of(body.wait_seconds),
            allow_widening: body.allow_widening,
        },
    )
    .await
}
