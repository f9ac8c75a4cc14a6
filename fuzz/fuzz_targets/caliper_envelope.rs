//! Any body a sensor may POST to `/caliper/v1p1/events`: read as an envelope or refused with a
//! reason, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nigrani_ingest::CourseMap;
use nigrani_ingest::caliper::read_envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(mapped) = read_envelope(data, "fuzz", &CourseMap::default()) {
        let _ = mapped.into_items();
    }
});
