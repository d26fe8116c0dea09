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

/// What a child process has written so far, read as it goes.
#[derive(Clone, Default)]
pub struct Output(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Output {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Keeps the lines of `from` as they come, and sends each on `tx`.
    fn keep(&self, from: impl std::io::Read + Send + 'static, tx: std::sync::mpsc::Sender<String>) {
        let kept = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                kept.0.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
}

/// [`start_dev`], with the logging `dev` asks for (not silenced) and
/// everything it writes (logs go to stdout, with the banner) kept for the
/// test to read.
pub fn start_dev_capturing(mut dev: Command) -> (Proc, String, String, Output) {
    let mut child = dev
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start concierge dev");
    let output = Output::default();
    let (tx, rx) = std::sync::mpsc::channel();
    output.keep(child.stdout.take().unwrap(), tx.clone());
    output.keep(child.stderr.take().unwrap(), tx);
    let (mut url, mut key) = (String::new(), String::new());
    for line in rx {
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
        "concierge dev printed its address and key; it wrote: {:?}",
        output.lines()
    );
    (Proc(child), url, key, output)
}
