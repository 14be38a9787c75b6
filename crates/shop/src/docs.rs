//! `/v1/openapi.json` and an offline `/docs` page (Swagger UI, vendored: nothing is
//! fetched at build or run time; see `assets/swagger-ui/README.md`).

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

const SWAGGER_JS: &str = include_str!("../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &str = include_str!("../assets/swagger-ui/swagger-ui.css");

const DOCS_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>loadstar API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/v1/openapi.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
"##;

/// Routes for the API description and its reader.
pub fn router() -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async { static_asset("text/javascript; charset=utf-8", SWAGGER_JS) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async { static_asset("text/css; charset=utf-8", SWAGGER_CSS) }),
        )
}

async fn openapi_json() -> impl IntoResponse {
    Json(crate::openapi::document())
}

fn static_asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}
