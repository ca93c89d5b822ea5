//! Ring records are never trusted: any bytes decode to an event or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = socktrace::event::decode(bytes);
});
