//! `GET /assets/{file}`: the stylesheet and the one script, embedded in the
//! binary (nothing is loaded from elsewhere at run time, and building needs
//! no Node toolchain: both are plain files under `src/http/assets/`).
//!
//! Edge layer.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::HttpError;

/// Where pages link the stylesheet.
pub(crate) const CSS_PATH: &str = "/assets/console.css";
/// Where pages load the script.
pub(crate) const JS_PATH: &str = "/assets/console.js";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// One embedded file.
pub(super) async fn file(Path(name): Path<String>) -> Result<Response, HttpError> {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return Err(HttpError::NotFound(format!("no asset {name:?}"))),
    };
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response())
}
