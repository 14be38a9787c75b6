//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The shop's API description, served at `/v1/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "loadstar shop API",
        version = "1",
        description = "The example domain of loadstar. Errors are RFC 9457 problem+json; ids are strings; money is integer minor units."
    ),
    paths(
        crate::users::routes::create_user,
        crate::users::routes::get_user,
        crate::users::routes::patch_user,
        crate::sessions::create_session,
        crate::sessions::delete_current_session,
        crate::api_keys::issue,
        crate::api_keys::list,
        crate::api_keys::revoke,
        crate::products::routes::list_products,
        crate::products::routes::get_product,
        crate::products::routes::create_product,
        crate::products::routes::replace_product,
        crate::products::routes::patch_product,
        crate::products::routes::delete_product,
        crate::product_imports::routes::create_product_import,
        crate::orders::routes::place_order,
        crate::orders::routes::list_orders,
        crate::orders::routes::get_order,
        crate::orders::routes::list_order_items,
        crate::orders::routes::cancel_order,
    ),
    components(schemas(loadstar_core::Problem, loadstar_core::FieldError)),
    modifiers(&SecuritySchemes, &CommonResponses),
    tags(
        (name = "users", description = "accounts"),
        (name = "sessions", description = "login and logout"),
        (name = "api-keys", description = "long-lived credentials for programs"),
        (name = "products", description = "the catalog"),
        (name = "orders", description = "a customer's orders"),
    )
)]
pub struct ShopApi;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The served document: the shop's API plus the job system's admin and status routes,
/// which the shop mounts behind admin authentication.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ShopApi::openapi();
    let mut jobs = loadstar_jobs::JobsAdminApi::openapi();
    jobs.merge(loadstar_jobs::JobStatusApi::openapi());
    for item in jobs.paths.paths.values_mut() {
        for (operation, writes) in operations(item) {
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
            ]);
            add_common_responses(operation, writes);
            operation
                .responses
                .responses
                .entry("403".to_owned())
                .or_insert_with(|| problem_response("the caller is not an administrator"));
        }
    }
    document.merge(jobs);
    document
}

/// Failures every endpoint of a kind can answer, added once here instead of on each
/// handler: 401 wherever credentials are required, 413 and 415 wherever a body is read,
/// 503 everywhere (a dependency down, with `Retry-After`), 507 wherever something is
/// written (the disk under the database is full, with `Retry-After`).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for (operation, writes) in operations(item) {
                add_common_responses(operation, writes);
            }
        }
    }
}

/// The operations of a path, each with whether it changes state.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&mut Operation, bool)> {
    [
        (&mut item.get, false),
        (&mut item.put, true),
        (&mut item.post, true),
        (&mut item.delete, true),
        (&mut item.patch, true),
    ]
    .into_iter()
    .filter_map(|(operation, writes)| operation.as_mut().map(|operation| (operation, writes)))
}

fn add_common_responses(operation: &mut Operation, writes: bool) {
    let needs_credentials = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    let reads_body = operation.request_body.is_some();
    let has_path_parameters = operation.parameters.as_ref().is_some_and(|parameters| {
        parameters
            .iter()
            .any(|parameter| parameter.parameter_in == ParameterIn::Path)
    });
    let mut add = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description));
    };
    if has_path_parameters {
        add("400", "a path parameter is not a valid id");
    }
    if needs_credentials {
        add("401", "missing, invalid, expired or revoked credentials");
    }
    if reads_body {
        add("413", "the body is larger than server.body_limit_bytes");
        add("415", "the body is not JSON");
    }
    let responses = &mut operation.responses.responses;
    responses.insert(
        "503".to_owned(),
        retry_later_response(
            "a dependency (the database, the queue) is down or saturated; nothing was changed \
             unless the same request is later found to have completed (use Idempotency-Key)",
        ),
    );
    if writes {
        responses.insert(
            "507".to_owned(),
            retry_later_response(
                "the server's disk is full: nothing of this request was stored; retry after \
                 Retry-After",
            ),
        );
    }
}

/// A problem response that carries `Retry-After`.
fn retry_later_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                )
                .description(Some("seconds to wait before retrying"))
                .build(),
        )
        .content(
            loadstar_core::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

fn problem_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            loadstar_core::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}
