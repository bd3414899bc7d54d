//! The API's OpenAPI 3.1 document, built from the handlers' and types' own annotations and
//! doc comments, so it cannot drift from the code.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tsunagi local API",
        description = "tsunagid's local API: reception checks with the My Number card, the checks waiting for 事後確認, records, status and an event stream. Loopback only; bearer token from the daemon's token file. Errors are RFC 9457 problem documents with a Japanese `detail` for the operator."
    ),
    paths(
        super::routes::start_check,
        super::routes::list_checks,
        super::routes::read_check,
        super::routes::declare,
        super::routes::report_numbers,
        super::routes::resolve,
        super::routes::claimed,
        super::routes::record_document,
        super::routes::check_by_numbers,
        super::routes::reconcile,
        super::routes::status,
        super::routes::events,
        super::routes::identity,
        super::routes::list_peers,
        super::routes::add_peer,
        super::routes::remove_peer,
        super::page::make_code,
    ),
    modifiers(&Bearer),
    tags(
        (name = "checks", description = "Reception checks and the checks in the ledger"),
        (name = "records", description = "What staff record about a check"),
        (name = "status", description = "The daemon's state and its changes"),
        (name = "sync", description = "This device's id and the devices it syncs with"),
        (name = "page", description = "Signing in to the reception page"),
    )
)]
struct Document;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}
