//! The server's configuration file: any text gives a validated `Config` or
//! an error naming what is wrong, never a panic.
#![no_main]

use herald::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(config) = Config::from_toml(text) {
        // What validates also yields its derived settings.
        let _ = config.transport();
        let _ = config.broker();
    }
});
