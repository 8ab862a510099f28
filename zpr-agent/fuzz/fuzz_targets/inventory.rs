#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../inventory_properties.rs"]
mod inventory_properties;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        inventory_properties::check(text);
    }
});
