#![allow(clippy::unwrap_used)]

//! The checked-in `openapi/openapi.json` must be the document the code builds.

use std::path::Path;

#[test]
fn checked_in_openapi_document_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let built = nigrani_api::openapi::document_json();
    assert!(
        checked_in == built,
        "openapi/openapi.json is out of date with the code; regenerate it with \
         `cargo run -q -p nigrani -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_lists_every_error_code() {
    let document: serde_json::Value =
        serde_json::from_str(&nigrani_api::openapi::document_json()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let codes = &document["components"]["schemas"]["ErrorBody"]["properties"]["code"]["enum"];
    for code in nigrani_api::error::ErrorCode::ALL {
        let code = code.as_str();
        assert!(
            codes.as_array().is_some_and(|c| c.contains(&code.into())),
            "error code `{code}` is missing from the document"
        );
    }
    for path in [
        "/api/v1/summary",
        "/api/v1/breakdown",
        "/api/v1/stream",
        "/grafana/query",
        "/api/v1/events",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is not documented"
        );
    }
}

#[test]
fn every_reference_in_the_document_resolves() {
    fn walk(value: &serde_json::Value, document: &serde_json::Value) {
        match value {
            serde_json::Value::Object(fields) => {
                if let Some(reference) = fields.get("$ref").and_then(|r| r.as_str()) {
                    let pointer = reference.trim_start_matches('#');
                    assert!(
                        document.pointer(pointer).is_some(),
                        "`{reference}` does not resolve"
                    );
                }
                fields.values().for_each(|v| walk(v, document));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, document)),
            _ => {}
        }
    }
    let document: serde_json::Value =
        serde_json::from_str(&nigrani_api::openapi::document_json()).unwrap();
    walk(&document, &document);
}
