//! `analyze` input: any bytes read as records or per-line errors, never a
//! panic, and reading always reaches the end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let reader = socktrace::input::Reader::new(std::io::BufReader::new(bytes));
    for record in reader {
        let _ = record;
    }
});
