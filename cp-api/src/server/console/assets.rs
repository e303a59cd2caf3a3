//! The console's stylesheet and script, compiled into the binary: nothing to install or
//! serve beside `signet-cp`, and no build step (they are the files in `assets/`).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// `GET /ui/assets/{file}`: public (the sign-in page needs them), and nothing secret.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => return super::Page::error(StatusCode::NOT_FOUND, "no such file"),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}
