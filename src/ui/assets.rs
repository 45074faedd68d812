//! The pages' scripts and styles, compiled into the binary and served under
//! `/ui/assets/<version>/<name>` with a year-long cache: the version is a hash of every asset,
//! so a new build's pages name new URLs. No page loads anything from another host.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// uPlot (MIT, its licence beside it in `ui/vendor/uplot/`) draws the per-minute charts.
const ASSETS: [Asset; 4] = [
    Asset {
        name: "uplot.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        name: "uplot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../ui/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../ui/assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../ui/assets/app.css"),
    },
];

/// The path prefix pages load assets from, `/ui/assets/<version>`.
pub fn base() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for a in &ASSETS {
            h.update(a.name.as_bytes());
            h.update(a.bytes);
        }
        format!("/ui/assets/{:012x}", h.digest() & 0xffff_ffff_ffff)
    })
}

/// `GET /ui/assets/{version}/{name}`. Any version is served (a page of the previous build
/// still gets styles); only the current one is cached for long.
pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let current = base().rsplit('/').next() == Some(version.as_str());
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.bytes,
    )
        .into_response()
}
