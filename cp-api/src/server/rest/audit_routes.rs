//! `GET /v1/audit` (the shipped decisions) and `GET /v1/operator-actions` (the operator log).

use super::*;

pub(super) async fn audit_records(
    State(api): State<Api>,
    op: Operator,
    query: Result<
        Query<crate::server::store::AuditQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> ApiResult<model::AuditPage> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    api.authorize(
        &op,
        Act::Read {
            collection: "audit",
        },
    )
    .await?;
    let rows = api.hub.store.query_audit(query).await?;
    Ok(Json(model::AuditPage {
        records: rows.into_iter().map(audit_record).collect(),
    }))
}

/// An indexed row as the API shows it.
fn audit_record(row: crate::server::store::AuditRow) -> model::AuditRecord {
    let kind = model::AuditKind::from_name(&row.kind);
    model::AuditRecord {
        id: row.id,
        writer: row.writer,
        seq: row.seq,
        time: row.time,
        kind,
        decision: row.decision,
        action: row.action,
        principal: row.principal,
        resource: row.resource,
        path: row.path,
        policies: row.policies,
        candidate: row.candidate,
        line: row.line,
    }
}

/// `GET /v1/operator-actions?limit=N&before=ID`: a page of the log, newest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionsQuery {
    /// Entries per page (default 200, at most 1,000).
    #[serde(default)]
    limit: Option<u32>,
    /// Only entries older than this `id` (the previous page's `next_before`).
    #[serde(default)]
    before: Option<i64>,
}

pub(super) async fn actions(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<ActionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<model::OperatorActions> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let limit = page_limit(query.limit, 200)?;
    api.authorize(
        &op,
        Act::Read {
            collection: "operator-actions",
        },
    )
    .await?;
    let page = api.hub.store.actions(limit, query.before).await?;
    // A full page may have more behind it.
    let next_before = (page.len() == limit as usize)
        .then(|| page.last().map(|a| a.id))
        .flatten();
    Ok(Json(model::OperatorActions {
        actions: page,
        next_before,
    }))
}
