//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
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
        crate::orders::routes::place_order,
        crate::orders::routes::list_orders,
        crate::orders::routes::get_order,
        crate::orders::routes::list_order_items,
        crate::orders::routes::cancel_order,
    ),
    components(schemas(loadstar_core::Problem, loadstar_core::FieldError)),
    modifiers(&SecuritySchemes),
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
