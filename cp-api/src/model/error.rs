//! The one error body.

use serde::{Deserialize, Serialize};

/// What every refused or failed call answers, with a status that says which kind: 400 the
/// request is malformed, 401 unauthenticated, 403 not allowed (and recorded), 404 no such
/// thing, 409 a conflict (a newer version, a widening not accepted), 413 too large, 422 the
/// content is invalid (`problems` lists each), 503 the store is away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
