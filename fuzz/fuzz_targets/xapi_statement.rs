//! Any body a client may POST to `/xapi/statements`: the validator must answer (never panic),
//! and a statement it accepts must map, hash and name its references without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nigrani_ingest::CourseMap;
use nigrani_ingest::xapi::{mapping, refs, validate};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = validate::parse_timestamp(text);
        let _ = validate::duration_seconds(text);
        let _ = validate::is_language_tag(text);
    }
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let statements: Vec<&Value> = match &body {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    for statement in statements {
        for version in [validate::Version::V1_0_3, validate::Version::V2_0_0] {
            if validate::validate_statement(statement, version).is_ok() {
                let _ = refs::statement_refs(statement);
                let _ = mapping::event_of(statement, "fuzz", &CourseMap::default(), "hash");
            }
        }
        let _ = validate::validate_agent(statement, validate::Version::V2_0_0);
    }
});
