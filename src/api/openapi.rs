//! The OpenAPI 3.1 document, `GET /openapi.json`. It is generated from the handlers' own
//! `#[utoipa::path]` annotations and the request and response types they use, gathered by
//! the same route table the router is built from ([`super::routes`]), so a route cannot be
//! served without being described. What applies to whole groups of routes is added here
//! once, from the group a route is in: the bearer key on the keyed routes, and the errors
//! any route of a group can answer (401 without a key, 408 and 413 on a body, 503 over
//! capacity).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, RefOr, Response as ApiResponse,
    ResponseBuilder,
};
use utoipa::{OpenApi, PartialSchema};

use super::error::{ErrorBody, ErrorCode};
use super::server::RESERVED_PATHS;
use crate::access::Scope;

/// The name of the bearer-key security scheme.
pub const BEARER: &str = "bearer";

/// What the document says of herald as a whole; paths come from the route table.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "herald",
        description = "Message dispatch gateway: contact snapshot, policy, rate-limited sends, reports. Errors are JSON `{\"error\": {\"code\", \"message\", \"field\"?}}`; `code` is stable.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(
        ErrorBody,
        ErrorCode,
        crate::callbacks::ReceiptTally,
        crate::report::recipients::RecipientLine,
        crate::ledger::LedgerEntry,
    )),
    tags(
        (name = "snapshot", description = "The contact snapshot and incremental patches"),
        (name = "suppressions", description = "The do-not-contact list"),
        (name = "jobs", description = "Submitting and steering jobs"),
        (name = "reports", description = "Funnels, per-recipient outcomes and consent history"),
        (name = "ledger", description = "The cost ledger and invoice reconciliation"),
        (name = "webhooks", description = "Signed event webhooks"),
        (name = "keys", description = "API keys: tenants and scopes"),
        (name = "callbacks", description = "Provider receipts and inbound replies (signed, no key)"),
        (name = "tracking", description = "Tracked links and the open pixel (signed tokens, no key)"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct Base;

/// The whole document, built once per process.
pub static DOCUMENT: LazyLock<Document> = LazyLock::new(super::openapi_document);

static DOCUMENT_JSON: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&*DOCUMENT).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be written");
        String::from("{}")
    })
});

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi_document",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_JSON.as_str(),
    )
        .into_response()
}

/// Builds the document from the route groups' own documents: each `keyed` group takes the
/// bearer key with the scope it needs (and 403 when the key lacks it, or, for the
/// installation's routes, belongs to another tenant than the default one); `open` ones take
/// no key.
pub fn assemble(keyed: Vec<(Scope, bool, Document)>, open: Document) -> Document {
    let mut doc = Base::openapi();
    for (scope, installation, mut group) in keyed {
        for (path, item) in group.paths.paths.iter_mut() {
            for op in operations(item) {
                op.security = Some(vec![SecurityRequirement::new(BEARER, [scope.as_str()])]);
                let why = if installation {
                    format!(
                        "The key lacks the scope `{scope}`, or belongs to a tenant other than \
                         the default one: this route is the installation's (`forbidden`)"
                    )
                } else {
                    format!("The key lacks the scope `{scope}` (`forbidden`)")
                };
                op.responses
                    .responses
                    .entry("403".to_string())
                    .or_insert(RefOr::T(error(&why, false)));
                add_common(path, op, true);
            }
        }
        doc.merge(group);
    }
    let mut open = open;
    for (path, item) in open.paths.paths.iter_mut() {
        for op in operations(item) {
            add_common(path, op, false);
        }
    }
    doc.merge(open);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key: one from `[auth] api_keys` or `HERALD_API_KEYS` (an \
                     administrator of the default tenant), or one made with `POST /v1/keys`. \
                     Each operation's security requirement names the scope it needs; `admin` \
                     includes every scope.",
                ))
                .build(),
        ),
    );
    doc
}

/// Every operation of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The errors every route of its group can answer, unless the route describes them itself.
fn add_common(path: &str, op: &mut Operation, keyed: bool) {
    let mut add = |status: &str, r: ApiResponse| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert(RefOr::T(r));
    };
    // Every parameter and body is validated; what fails names its field.
    let has_parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if op.request_body.is_some() {
        add(
            "400",
            error(
                "A malformed field (`invalid_field`, naming it) or body (`bad_request`)",
                false,
            ),
        );
    } else if has_parameters {
        add(
            "400",
            error("A malformed field (`invalid_field`, naming it)", false),
        );
    }
    if keyed {
        add("401", error("No or wrong API key (`unauthorized`)", false));
    }
    if op.request_body.is_some() {
        add(
            "408",
            error("The body stopped arriving (`body_stalled`)", false),
        );
        add(
            "413",
            error("The body exceeds its cap (`body_too_large`)", false),
        );
    }
    if !RESERVED_PATHS.contains(&path) {
        add(
            "503",
            error(
                "Over capacity (`over_capacity`): the server holds as many connections as it serves",
                true,
            ),
        );
    }
}

/// A template variable: a string, number or boolean (used as text).
impl PartialSchema for super::job_request::Scalar {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .into()
    }
}

impl utoipa::ToSchema for super::job_request::Scalar {}

/// An error response with the JSON error body, and `Retry-After` when it is a 503.
pub fn error(description: &str, retry_after: bool) -> ApiResponse {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            ))))
            .build(),
    );
    if retry_after {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(u64::schema()))
                .description(Some("Seconds to wait before repeating the request"))
                .build(),
        );
    }
    r.build()
}
