//! What the binary's process tests share: the binary, a child process that
//! dies with the test, and a `concierge dev` started and waited for.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_concierge");

/// A child process that is killed if the test ends early.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dev` (a `concierge dev` command with its arguments and working
/// directory set) and waits, on its output, for the gateway address and the
/// admin key it prints: (process, gateway URL, admin key).
pub fn start_dev(mut dev: Command) -> (Proc, String, String) {
    let mut child = dev
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start concierge dev");
    let stdout = child.stdout.take().unwrap();
    let (mut url, mut key) = (String::new(), String::new());
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read dev output");
        if let Some(u) = line.trim().strip_prefix("gateway listening on ") {
            url = u.to_string();
        }
        if let Some(k) = line.trim().strip_prefix("admin API key: ") {
            key = k.to_string();
            break;
        }
    }
    assert!(
        !url.is_empty() && !key.is_empty(),
        "concierge dev printed its address and key"
    );
    (Proc(child), url, key)
}
