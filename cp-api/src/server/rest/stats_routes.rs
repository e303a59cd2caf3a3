//! `GET /v1/stats`: golden signals per service or per caller -> service edge over a window,
//! from what the proxies report in their heartbeats (`meshctl stats`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::{Api, ApiError, ApiResult, Operator};
use crate::model;
use crate::server::operators::Act;
use crate::server::stats::{By, MAX_WINDOW};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    /// Seconds to look back (default 60, at most 900).
    #[serde(default)]
    window_seconds: Option<u64>,
    /// `service` (default) or `edge`.
    #[serde(default)]
    by: Option<String>,
    /// Only this service.
    #[serde(default)]
    service: Option<String>,
}

pub(super) async fn stats(
    State(api): State<Api>,
    op: Operator,
    query: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<model::Stats> {
    let Query(query) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let window = query.window_seconds.unwrap_or(60);
    if window == 0 || window > MAX_WINDOW.as_secs() {
        return Err(ApiError::bad(format!(
            "window_seconds must be between 1 and {}",
            MAX_WINDOW.as_secs()
        )));
    }
    let by = match query.by.as_deref() {
        None | Some("service") => By::Service,
        Some("edge") => By::Edge,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "by: `{other}` is neither `service` nor `edge`"
            )));
        }
    };
    api.authorize(
        &op,
        Act::Read {
            collection: "stats",
        },
    )
    .await?;
    let rows = api
        .hub
        .stats
        .rows(Duration::from_secs(window), by, query.service.as_deref());
    Ok(Json(model::Stats {
        window_seconds: window,
        by: if by == By::Edge {
            model::StatsBy::Edge
        } else {
            model::StatsBy::Service
        },
        rows,
    }))
}
