//! Arbitrary bytes as a segment file: scan, full read, check and repair never panic, and every
//! record returned comes from a CRC-valid frame (the assertions are in
//! `felix_storage::check::segment_scan`, which the crate's proptest runs on every `cargo test`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    felix_storage::check::segment_scan::segment_scan(data);
});
