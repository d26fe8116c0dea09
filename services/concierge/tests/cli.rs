//! The `concierge` command line as a new user meets it: the examples its
//! `--help` and the README give, how it reaches a gateway (TLS, plain text
//! on this machine only, bare addresses), and the first-run mistakes it must
//! answer with what to do. Waits are on conditions (a printed line), never on
//! timers.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concierge_proto::concierge::testing::v1::test_clock_service_server::{
    TestClockService, TestClockServiceServer,
};
use concierge_proto::concierge::testing::v1::{
    AdvanceTestClockRequest, GetTestClockRequest, TestClock,
};

mod support;
use support::{BIN, Proc};

/// A running `concierge dev`: its process, gateway URL and admin key.
struct Dev {
    proc: Proc,
    url: String,
    key: String,
}

/// Starts `concierge dev` in `cwd` with `args`, and reads the address and
/// admin key it prints.
fn start_dev(cwd: &Path, args: &[&str]) -> Dev {
    let mut dev = Command::new(BIN);
    dev.arg("dev").args(args).current_dir(cwd);
    let (proc, url, key) = support::start_dev(dev);
    Dev { proc, url, key }
}

/// Runs the CLI in `cwd` against `dev`.
fn cli_in(cwd: &Path, dev: &Dev, args: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("CONCIERGE_GATEWAY", &dev.url)
        .env("CONCIERGE_API_KEY", &dev.key)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every command's `--help`, walking the command tree from the top.
fn every_help() -> Vec<(Vec<String>, String)> {
    let mut found = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let out = Command::new(BIN)
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{path:?} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        let mut in_commands = false;
        for line in help.lines() {
            if line == "Commands:" {
                in_commands = true;
            } else if in_commands {
                if line.is_empty() {
                    break;
                }
                // A command's own line; a wrapped description is indented further.
                if line.starts_with("  ") && !line.starts_with("   ") {
                    let name = line.split_whitespace().next().unwrap_or_default();
                    if name == "help" {
                        continue;
                    }
                    let mut sub = path.clone();
                    sub.push(name.to_string());
                    queue.push(sub);
                }
            }
        }
        found.push((path, help));
    }
    found
}

/// The example invocations a help text gives: each line that shows a
/// `--filter '…'` or `--order-by '…'`, from its first flag on; and each
/// quoted example ("e.g. '…'") in the description of the --filter and
/// --order-by options themselves.
fn filter_examples(help: &str) -> Vec<Vec<String>> {
    let mut examples: Vec<Vec<String>> = help
        .lines()
        .filter(|l| l.contains("--filter '") || l.contains("--order-by '"))
        .map(|l| {
            let from = l.find("--").unwrap();
            shlex::split(&l[from..]).unwrap_or_else(|| panic!("unbalanced quotes in {l:?}"))
        })
        .collect();
    // The option's description follows it on the same line (short help)
    // or on the lines below (long help).
    let mut option: Option<&str> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            option = ["--filter", "--order-by"]
                .into_iter()
                .find(|o| trimmed.starts_with(&format!("{o} <")));
        }
        if let Some(flag) = option
            && let Some((_, example)) = line.split_once("e.g.")
        {
            for quote in ['\'', '"'] {
                let mut parts = example.split(quote);
                parts.next();
                while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
                    // `[default: ""]` is no example.
                    if !inside.is_empty() {
                        examples.push(vec![flag.to_string(), inside.to_string()]);
                    }
                }
            }
        }
    }
    examples
}

/// Every filter and order_by example in `--help` is accepted by the list it
/// documents, against a real `concierge dev`; and every list shows one.
#[tokio::test]
async fn every_filter_example_in_help_is_accepted_by_its_list() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", ".concierge"],
    );
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = cli_in(dir.path(), &dev, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    // Parents that exist, so that a list under one answers.
    run(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
    ]);
    run(&[
        "customers",
        "sites",
        "create",
        "acme",
        "--id",
        "hq",
        "--display-name",
        "HQ",
        "--time-zone",
        "America/Chicago",
    ]);
    run(&[
        "disputes",
        "create",
        "--account",
        "acme",
        "--invoice",
        "INV-1",
        "--line",
        "charge=Line rental;billed=10.00 USD;disputed=5.00 USD;reason=duplicate",
        "--id",
        "d1",
    ]);
    let positional = |name: &str| match name {
        "<ACCOUNT>" => "acme",
        "<SITE>" => "accounts/acme/sites/hq",
        "<DISPUTE>" => "d1",
        other => panic!("the test knows no value for {other}: add one"),
    };

    let mut tried = 0;
    let mut failures = Vec::new();
    for (path, help) in every_help() {
        // A parent lists its commands' summaries, examples included: each
        // is run from the command's own help.
        if help.contains("\nCommands:\n") {
            continue;
        }
        let examples = filter_examples(&help);
        let is_list = help.contains("--filter <FILTER>");
        if is_list && examples.is_empty() {
            failures.push(format!("{path:?} --help shows no --filter example"));
        }
        if !is_list && !examples.is_empty() {
            failures.push(format!(
                "{path:?} --help shows filter examples but takes no --filter"
            ));
        }
        if examples.is_empty() {
            continue;
        }
        let usage = help
            .lines()
            .find_map(|l| l.strip_prefix("Usage: "))
            .unwrap_or_default();
        let required: Vec<&str> = usage
            .split_whitespace()
            .filter(|w| w.starts_with('<'))
            .map(positional)
            .collect();
        for example in examples {
            let mut args = path.clone();
            args.extend(required.iter().map(|s| s.to_string()));
            args.extend(example);
            args.extend(["--page-size".to_string(), "1".to_string()]);
            let out = cli_in(dir.path(), &dev, &args);
            tried += 1;
            if !out.status.success() {
                failures.push(format!("{args:?}: {}", text(&out)));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(tried >= 7, "the help texts show examples ({tried} found)");
}

/// One command of the README: its words, and for a `console` block the
/// output it shows (`…` stands for anything).
struct ReadmeCommand {
    words: Vec<String>,
    shown: Vec<String>,
}

/// The `concierge` commands of the README's tour, in order.
fn readme_tour() -> Vec<ReadmeCommand> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme.find("## A five-minute tour").expect("the tour");
    let end = start
        + readme[start..]
            .find("\n## ")
            .expect("the section after the tour");
    let tour = &readme[start..end];
    let mut commands = Vec::new();
    let mut rest = tour;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let (lang, body_start) = after.split_once('\n').unwrap();
        let close = body_start.find("```").expect("a closed block");
        let body = &body_start[..close];
        rest = &body_start[close + 3..];
        match lang.trim() {
            "sh" => {
                for line in body.replace("\\\n", " ").lines() {
                    let words = shlex::split(line).unwrap_or_else(|| panic!("{line:?}"));
                    if words.first().map(String::as_str) == Some("concierge") {
                        commands.push(ReadmeCommand {
                            words: words[1..].to_vec(),
                            shown: vec![],
                        });
                    }
                }
            }
            "console" => {
                for line in body.lines() {
                    if let Some(cmd) = line.strip_prefix("$ ") {
                        let words = shlex::split(cmd).unwrap();
                        if words.first().map(String::as_str) == Some("concierge") {
                            commands.push(ReadmeCommand {
                                words: words[1..].to_vec(),
                                shown: vec![],
                            });
                        } else {
                            // Output of a command this test does not run
                            // (`cargo run … dev`): skip it.
                            commands.push(ReadmeCommand {
                                words: vec![],
                                shown: vec![],
                            });
                        }
                    } else if let Some(last) = commands.last_mut() {
                        last.shown.push(line.to_string());
                    }
                }
                commands.retain(|c| !c.words.is_empty());
            }
            _ => {}
        }
    }
    commands
}

/// Whether `line` shows in `output`, with `…` standing for anything.
fn shows(output: &str, line: &str) -> bool {
    output.lines().any(|out| {
        let mut at = 0;
        line.split('…').all(|part| match out[at..].find(part) {
            Some(i) => {
                at += i + part.len();
                true
            }
            None => false,
        })
    })
}

/// Every command of the README's tour runs as written, in order, against
/// `concierge dev --test-clock` as the README starts it; a command whose
/// output the README shows prints that.
#[tokio::test]
async fn every_readme_tour_command_runs_as_written() {
    let commands = readme_tour();
    assert!(commands.len() >= 25, "found {} commands", commands.len());
    let dir = tempfile::tempdir().unwrap();
    // The README's own data directory, `.concierge` where dev was started,
    // is where `concierge keys` looks.
    let dev = start_dev(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--test-clock",
            "2026-11-25T19:00:00Z",
        ],
    );
    for c in commands {
        let out = cli_in(dir.path(), &dev, &c.words);
        let output = text(&out);
        if c.shown.is_empty() {
            assert!(out.status.success(), "concierge {:?}: {output}", c.words);
        } else {
            for line in &c.shown {
                assert!(
                    shows(&output, line),
                    "concierge {:?} shows {line:?}; it printed:\n{output}",
                    c.words
                );
            }
        }
    }
}

/// A stand-in gateway that serves the test clock over TLS and keeps the
/// credentials each call arrived with.
struct TlsStandIn {
    seen: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TestClockService for TlsStandIn {
    async fn get_test_clock(
        &self,
        request: tonic::Request<GetTestClockRequest>,
    ) -> Result<tonic::Response<TestClock>, tonic::Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.seen.lock().unwrap().push(auth);
        Ok(tonic::Response::new(TestClock {
            name: "testClock".into(),
            now: Some(prost_types::Timestamp {
                seconds: 1_795_000_000,
                nanos: 0,
            }),
        }))
    }

    async fn advance_test_clock(
        &self,
        _: tonic::Request<AdvanceTestClockRequest>,
    ) -> Result<tonic::Response<TestClock>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this stand-in"))
    }
}

/// `--gateway https://…` speaks TLS: with the CA in --ca-file (or
/// CONCIERGE_CA_FILE) the key arrives; with the system's roots an unknown
/// CA is refused and nothing is sent.
#[tokio::test]
async fn an_https_gateway_is_reached_over_tls_with_a_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Concierge test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(
            tonic::transport::Identity::from_pem(leaf.pem(), leaf_key.serialize_pem()),
        ))
        .unwrap()
        .add_service(TestClockServiceServer::new(TlsStandIn {
            seen: seen.clone(),
        }))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let server = tokio::spawn(server);

    let gateway = format!("https://localhost:{port}");
    let clock_get = move |extra: Vec<(&'static str, String)>, args: Vec<String>| {
        let gateway = gateway.clone();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(BIN);
            cmd.args(["clock", "get", "--gateway", &gateway])
                .args(args)
                .env("CONCIERGE_API_KEY", "ck_tls_test")
                .env_remove("CONCIERGE_CA_FILE");
            for (k, v) in extra {
                cmd.env(k, v);
            }
            cmd.output().unwrap()
        })
    };

    let trusted = clock_get(
        vec![],
        vec!["--ca-file".into(), ca_file.display().to_string()],
    )
    .await
    .unwrap();
    assert!(trusted.status.success(), "{}", text(&trusted));
    assert_eq!(
        String::from_utf8_lossy(&trusted.stdout).trim(),
        "2026-11-18T11:06:40Z"
    );
    assert_eq!(*seen.lock().unwrap(), vec!["Bearer ck_tls_test"]);

    let by_env = clock_get(
        vec![("CONCIERGE_CA_FILE", ca_file.display().to_string())],
        vec![],
    )
    .await
    .unwrap();
    assert!(by_env.status.success(), "{}", text(&by_env));
    assert_eq!(seen.lock().unwrap().len(), 2);

    // The system's roots do not know the test CA: refused, and said why.
    let untrusted = clock_get(vec![], vec![]).await.unwrap();
    assert!(!untrusted.status.success());
    let said = text(&untrusted);
    assert!(said.contains("certificate"), "{said}");
    assert_eq!(seen.lock().unwrap().len(), 2, "no call got through");
    server.abort();
}

/// Credentials in clear to another machine are refused before any
/// connection, and the message says how to do it right. 192.0.2.1 is a
/// documentation address: nothing is ever sent there.
#[tokio::test]
async fn credentials_in_clear_to_another_host_are_refused_before_connecting() {
    for (gateway, says) in [
        ("http://192.0.2.1:50050", "--insecure-plaintext"),
        ("192.0.2.1:50050", "write https://192.0.2.1:50050"),
    ] {
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(["customers", "list", "--gateway", gateway])
            .env("CONCIERGE_API_KEY", "ck_secret")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let said = text(&out);
        assert!(said.contains(says), "{gateway}: {said}");
        assert!(
            said.contains("https://192.0.2.1:50050"),
            "{gateway}: {said}"
        );
        // Connecting would take the 5 s connect timeout (or fail on the
        // network): the refusal comes first.
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

/// First run: a bare loopback address, `--listen` by host name, the clock
/// without --test-clock, one dev per data directory (and the lock goes
/// with a killed process), and `concierge keys` away from a data directory.
#[tokio::test]
async fn first_run_mistakes_get_answers_that_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_dev(
        dir.path(),
        &["--listen", "localhost:0", "--data-dir", "data"],
    );
    let bare = first.url.strip_prefix("http://").unwrap().to_string();
    assert!(bare.starts_with("127.0.0.1:"), "{bare}");
    let list = Command::new(BIN)
        .args(["customers", "list", "--gateway", &bare])
        .env("CONCIERGE_API_KEY", &first.key)
        .output()
        .unwrap();
    assert!(list.status.success(), "{}", text(&list));
    assert!(String::from_utf8_lossy(&list.stdout).starts_with("NAME"));

    let clock = Command::new(BIN)
        .args(["clock", "advance", "1h", "--gateway", &first.url])
        .env("CONCIERGE_API_KEY", &first.key)
        .output()
        .unwrap();
    assert!(!clock.status.success());
    assert!(
        text(&clock).contains("concierge dev --test-clock"),
        "{}",
        text(&clock)
    );

    // A second dev on the same directory refuses, naming the first.
    let second = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir", "data"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = text(&second);
    assert!(said.contains("in use by another `concierge dev`"), "{said}");
    assert!(
        said.contains(&format!("pid {}", first.proc.0.id())),
        "{said}"
    );

    // `concierge keys` on the running dev's directory, as JSON.
    let keys = Command::new(BIN)
        .args(["keys", "list", "--json", "--data-dir", "data"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(keys.status.success(), "{}", text(&keys));
    let json: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(json["apiKeys"][0]["role"], "ROLE_ADMIN");
    assert_eq!(json["apiKeys"][0]["state"], "STATE_ACTIVE");

    // kill -9 leaves no stale lock behind.
    let mut first = first;
    first.proc.0.kill().unwrap();
    first.proc.0.wait().unwrap();
    let again = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    drop(again);

    // Away from any data directory, keys says where it looked and what to pass.
    let elsewhere = tempfile::tempdir().unwrap();
    let lost = Command::new(BIN)
        .args(["keys", "list"])
        .current_dir(elsewhere.path())
        .env_remove("CONCIERGE_DATABASE__URL")
        .output()
        .unwrap();
    assert!(!lost.status.success());
    let said = text(&lost);
    let looked = elsewhere
        .path()
        .canonicalize()
        .unwrap()
        .join(".concierge/gateway.db");
    assert!(
        said.contains(&looked.display().to_string())
            || said.contains(
                &elsewhere
                    .path()
                    .join(".concierge/gateway.db")
                    .display()
                    .to_string()
            ),
        "{said}"
    );
    assert!(
        said.contains("--data-dir") && said.contains("--database-url"),
        "{said}"
    );
    assert!(
        !elsewhere.path().join(".concierge").exists(),
        "nothing was created"
    );
}

/// An unreachable database is named (never with its password) with the
/// cause, at once rather than after the pool's 10 s timeout.
#[tokio::test]
async fn an_unreachable_database_is_named_with_its_cause() {
    let port = free_port();
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "migrate",
            "customers",
            "--database-url",
            &format!("postgres://concierge:hunter2-secret@127.0.0.1:{port}/customers"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(said.contains("refused"), "{said}");
    assert!(said.contains("CONCIERGE_DATABASE__URL"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// `concierge cases chase-rules apply -f` makes the rules a file describes,
/// replaces them when the file changes, and refuses a bad file naming the
/// rule and the field, storing nothing of it.
#[test]
fn chase_rules_are_applied_from_a_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let cli = |args: &[&str]| {
        cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        )
    };
    let rules = |second_wait: &str, placeholder: &str| {
        format!(
            r#"
[[rule]]
id = "site-survey"
display_name = "Site survey missing"
condition = {{ kind = "construction_undefined", expression = 'type = ORDER_NEW', missing = "the site survey" }}

[[rule.step]]
wait = "0h"
[[rule.step.action]]
post_note = {{ visibility = "internal", body = "{{{{case.performing_team}}}}: please send {{{{{placeholder}}}}}." }}

[[rule.step]]
wait = "{second_wait}"
basis = "wall_clock"
[[rule.step.action]]
escalate = {{ target = "account_manager_chain", reason = "{{{{missing}}}} still missing" }}
"#
        )
    };
    std::fs::write(dir.path().join("rules.toml"), rules("48h", "missing")).unwrap();
    let applied = cli(&["cases", "chase-rules", "apply", "-f", "rules.toml"]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        text(&applied).contains("applied chaseRules/site-survey"),
        "{}",
        text(&applied)
    );

    std::fs::write(dir.path().join("rules.toml"), rules("72h", "missing")).unwrap();
    let again = cli(&[
        "cases",
        "chase-rules",
        "apply",
        "-f",
        "rules.toml",
        "--json",
    ]);
    assert!(again.status.success(), "{}", text(&again));
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["chaseRules"][0]["steps"][1]["wait"], "259200s");

    std::fs::write(dir.path().join("rules.toml"), rules("96h", "case.colour")).unwrap();
    let bad = cli(&["cases", "chase-rules", "apply", "-f", "rules.toml"]);
    assert!(!bad.status.success());
    let said = text(&bad);
    assert!(said.contains("chaseRules/site-survey"), "{said}");
    assert!(
        said.contains("chase_rule.steps[0].actions[0].post_note.body_template"),
        "{said}"
    );

    let list = cli(&["cases", "chase-rules", "list"]);
    let listed = text(&list);
    assert!(list.status.success(), "{listed}");
    assert_eq!(
        listed.lines().count(),
        4,
        "three built in and the file's: {listed}"
    );
    assert!(listed.contains("chaseRules/jeopardy-without-reason  JP without reason  jeopardy_without_reason  2 step(s)  built-in"), "{listed}");

    let refused = cli(&["cases", "chase-rules", "delete", "jeopardy-without-reason"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("enabled = false"),
        "{}",
        text(&refused)
    );
    let deleted = cli(&["cases", "chase-rules", "delete", "site-survey"]);
    assert!(deleted.status.success(), "{}", text(&deleted));
}

/// An escalation from the command line: raised on a case, listed among the
/// open ones, taken and resolved.
#[test]
fn escalations_are_raised_and_worked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let cli = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    cli(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
        "--mrc",
        "30000.00 USD",
    ]);
    cli(&[
        "cases",
        "create",
        "--id",
        "down",
        "--account",
        "acme",
        "--type",
        "repair",
        "--title",
        "Circuit down",
    ]);
    let raised = cli(&[
        "cases",
        "escalations",
        "raise",
        "down",
        "--team",
        "noc",
        "--reason",
        "no ETA after 4 hours",
    ]);
    assert!(
        raised.contains("level 1  raised  to noc  no ETA after 4 hours"),
        "{raised}"
    );
    let name = raised.split_whitespace().next().unwrap().to_string();
    assert!(name.starts_with("cases/down/escalations/"), "{name}");

    let open = cli(&["cases", "escalations", "list"]);
    assert!(open.contains(&name), "{open}");
    assert!(cli(&["cases", "escalations", "ack", &name]).contains("acknowledged"));
    let resolved = cli(&[
        "cases",
        "escalations",
        "resolve",
        &name,
        "--outcome",
        "ETA given: 18:00",
    ]);
    assert!(resolved.contains("resolved"), "{resolved}");
    assert!(
        !cli(&["cases", "escalations", "list"]).contains(&name),
        "no longer open"
    );
    assert!(cli(&["cases", "escalations", "list", "down"]).contains(&name));
}

#[test]
fn chase_runs_are_followed_and_cancelled_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let cli = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    std::fs::write(
        dir.path().join("rules.toml"),
        r#"
[[rule]]
id = "repairs-need-an-owner"
display_name = "Repair without an owner"
condition = { kind = "expression", expression = 'type = REPAIR AND owner = ""', missing = "an owner" }

[[rule.step]]
wait = "0h"
[[rule.step.action]]
post_note = { visibility = "internal", body = "{{case.name}} needs {{missing}}." }

[[rule.step]]
wait = "48h"
[[rule.step.action]]
escalate = { target = "team", team = "noc", reason = "still no owner" }
"#,
    )
    .unwrap();
    cli(&["cases", "chase-rules", "apply", "-f", "rules.toml"]);
    cli(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
    ]);
    cli(&[
        "cases",
        "create",
        "--id",
        "down",
        "--account",
        "acme",
        "--type",
        "repair",
        "--title",
        "Circuit down",
    ]);
    let runs = cli(&["cases", "chase-runs", "list", "down"]);
    // The sweep may already have taken step 1 (its wait is zero), so the run is
    // either at "0 step(s) taken  step 1 due" or at "1 step(s) taken  step 2 due".
    assert!(
        runs.contains("active  Repair without an owner  0 step(s) taken  step 1 due")
            || runs.contains("active  Repair without an owner  1 step(s) taken  step 2 due"),
        "the run starts with the create: {runs}"
    );
    // The dev server's sweep takes the first step within its poll.
    let mut steps = String::new();
    for _ in 0..200 {
        steps = cli(&["cases", "chase-runs", "steps", "down"]);
        if steps.contains("step 1  done") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(steps.contains("step 1  done"), "{steps}");
    assert!(steps.contains("note cases/down/notes/"), "{steps}");
    assert!(steps.contains("step 2  scheduled  due"), "{steps}");

    let active = cli(&["cases", "chase-runs", "list"]);
    let run = active.split_whitespace().next().unwrap().to_string();
    assert!(run.starts_with("cases/down/chaseRuns/"), "{active}");
    let cancelled = cli(&[
        "cases",
        "chase-runs",
        "cancel",
        &run,
        "--reason",
        "the NOC owns it",
    ]);
    assert!(cancelled.contains("cancelled"), "{cancelled}");
    assert!(cli(&["cases", "chase-runs", "list"]).trim().is_empty());
    let steps = cli(&["cases", "chase-runs", "steps", "down"]);
    assert!(steps.contains("step 2  skipped"), "{steps}");
}

#[test]
fn a_repair_is_triaged_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let cli = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    cli(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
    ]);
    cli(&[
        "customers",
        "sites",
        "create",
        "acme",
        "--id",
        "hq",
        "--display-name",
        "HQ",
        "--time-zone",
        "America/Chicago",
    ]);
    let site = "accounts/acme/sites/hq";
    cli(&[
        "customers",
        "inventory",
        "create",
        site,
        "--id",
        "dia",
        "--kind",
        "data",
        "--product",
        "Dedicated Internet",
        "--role",
        "primary",
        "--carrier",
        "Lumen",
        "--bandwidth-kbps",
        "10000",
        "--monitoring-tool",
        "Intermapper",
    ]);
    cli(&[
        "customers",
        "inventory",
        "create",
        site,
        "--id",
        "cable",
        "--kind",
        "data",
        "--product",
        "Broadband",
        "--role",
        "secondary",
        "--carrier",
        "Comcast",
        "--bandwidth-kbps",
        "100000",
    ]);
    cli(&[
        "cases",
        "create",
        "--id",
        "down",
        "--account",
        "acme",
        "--type",
        "repair",
        "--title",
        "Internet down",
        "--site",
        "hq",
        "--item",
        "dia",
    ]);
    let triage = cli(&["cases", "triage", "down", "--record"]);
    assert!(
        triage.starts_with("HQ (accounts/acme/sites/hq)"),
        "{triage}"
    );
    let impacted: Vec<&str> = triage.lines().filter(|l| l.starts_with('!')).collect();
    assert_eq!(impacted.len(), 1, "{triage}");
    assert!(impacted[0].contains("Dedicated Internet"), "{triage}");
    assert!(
        triage.contains(
            "fail over from the primary Dedicated Internet (Lumen, 10 Mb/s) to the secondary Broadband (Comcast, 100 Mb/s)"
        ),
        "{triage}"
    );
    assert!(triage.contains("recorded as cases/down/notes/"), "{triage}");
}

#[test]
fn the_portfolio_review_is_read_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let run = |args: &[&str], key: &str| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env("CONCIERGE_GATEWAY", &dev.url)
            .env("CONCIERGE_API_KEY", key)
            .output()
            .unwrap()
    };
    let admin = |args: &[&str]| {
        let out = run(args, &dev.key);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    admin(&[
        "customers",
        "staff",
        "create",
        "--id",
        "ayse",
        "--display-name",
        "Ayse",
        "--email",
        "ayse@example.com",
        "--role",
        "account_manager",
    ]);
    admin(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
        "--account-manager",
        "staff/ayse",
    ]);
    for (id, title) in [("late", "Fibre late"), ("fine", "All good")] {
        admin(&[
            "cases",
            "create",
            "--id",
            id,
            "--account",
            "acme",
            "--type",
            "repair",
            "--title",
            title,
        ]);
        admin(&["cases", "start", id]);
    }
    admin(&["cases", "jeopardy", "late"]);

    // Ayse's own key: her portfolio by default.
    let minted = Command::new(BIN)
        .args([
            "keys",
            "create",
            "--role",
            "account_manager",
            "--staff-member",
            "staff/ayse",
            "--data-dir",
            "data",
            "--json",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", text(&minted));
    let minted: serde_json::Value = serde_json::from_slice(&minted.stdout).unwrap();
    let ayse = minted["key"].as_str().unwrap().to_string();
    let me = run(&["whoami"], &ayse);
    assert!(me.status.success(), "{}", text(&me));
    assert!(text(&me).contains("account manager"), "{}", text(&me));
    assert!(
        text(&me).contains("staff member: staff/ayse"),
        "{}",
        text(&me)
    );

    let review = run(&["review"], &ayse);
    let said = text(&review);
    assert!(review.status.success(), "{said}");
    assert!(
        said.starts_with("staff/ayse needs action on 1 item(s) (1 jeopardy without reason)"),
        "{said}"
    );
    let rows: Vec<&str> = said.lines().skip(2).collect();
    assert_eq!(rows.len(), 1, "{said}");
    assert!(rows[0].contains("cases/late"), "{said}");
    assert!(rows[0].contains("Acme Corp"), "{said}");
    assert!(
        rows[0].contains("Ask the performing team for the jeopardy reason and a revised ETA"),
        "{said}"
    );

    // Another's portfolio is for managers: the admin may, Ayse may not.
    assert!(admin(&["review", "--manager", "ayse"]).contains("cases/late"));
    let refused = run(&["review", "--manager", "bob"], &ayse);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("only managers"),
        "{}",
        text(&refused)
    );
}

#[test]
fn a_control_document_is_generated_sent_and_opened_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let cli = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    cli(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
        "--mrc",
        "30000.00 USD",
    ]);
    cli(&[
        "customers",
        "contacts",
        "create",
        "acme",
        "--id",
        "deniz",
        "--display-name",
        "Deniz",
        "--email",
        "deniz@acme.example",
        "--role",
        "primary",
        "--client-delegate",
    ]);
    cli(&[
        "cases",
        "create",
        "--id",
        "down",
        "--account",
        "acme",
        "--type",
        "repair",
        "--title",
        "Circuit down",
    ]);
    let preview = cli(&["control-doc", "generate", "acme", "--html", "preview.html"]);
    assert!(
        preview.starts_with("(preview)  on_demand  as of"),
        "{preview}"
    );
    assert!(preview.contains("1 request(s), 0 incomplete"), "{preview}");
    let page = std::fs::read_to_string(dir.path().join("preview.html")).unwrap();
    assert!(
        page.contains("Circuit down") && page.contains("Acme Corp"),
        "{page}"
    );

    let sent = cli(&["control-doc", "generate", "acme", "--send"]);
    assert!(sent.contains("to deniz@acme.example pending"), "{sent}");
    let name = sent.split_whitespace().next().unwrap().to_string();
    // Without SMTP, dev writes the message under its data directory.
    let outbox = dir.path().join("data").join("outbox-mail");
    let mut written = Vec::new();
    for _ in 0..200 {
        written = std::fs::read_dir(&outbox)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        if !written.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(written.len(), 1, "one .eml in {}", outbox.display());
    let eml = std::fs::read_to_string(&written[0]).unwrap();
    assert!(eml.contains("To: Deniz <deniz@acme.example>"), "{eml}");
    assert!(eml.contains(".csv"), "{eml}");

    let again = cli_in(
        dir.path(),
        &dev,
        &["control-doc", "generate", "acme", "--send"].map(String::from),
    );
    assert!(!again.status.success());
    assert!(text(&again).contains("this week"), "{}", text(&again));

    let listed = cli(&["control-doc", "list", "acme"]);
    assert!(listed.contains(&name), "{listed}");
    let opened = cli(&["control-doc", "open", &name, "--out", "sent.html"]);
    assert!(opened.trim().ends_with("sent.html"), "{opened}");
    let archived = std::fs::read_to_string(dir.path().join("sent.html")).unwrap();
    assert!(archived.contains("Circuit down"));
}

/// A billing dispute worked end to end through the gateway: a client key
/// files and submits it, vetting runs late and the account manager's review
/// says so, evidence goes up and comes back, a credit above the threshold
/// waits for a second manager, the position is e-mailed to the delegate in
/// Turkish, and the client key confirms: its own dispute, never another
/// account's.
#[test]
fn a_dispute_is_worked_from_the_cli_and_confirmed_by_the_clients_key() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--test-clock",
            "2026-11-02T09:00:00Z",
        ],
    );
    let run = |args: &[&str], key: &str| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env("CONCIERGE_GATEWAY", &dev.url)
            .env("CONCIERGE_API_KEY", key)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str], key: &str| {
        let out = run(args, key);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let admin = |args: &[&str]| ok(args, &dev.key);
    let mint = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["keys", "create", "--data-dir", "data", "--json"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    };
    for (id, role) in [("mira", "manager"), ("ayse", "account_manager")] {
        admin(&[
            "customers",
            "staff",
            "create",
            "--id",
            id,
            "--display-name",
            id,
            "--email",
            &format!("{id}@example.com"),
            "--role",
            role,
        ]);
    }
    for id in ["acme", "globex"] {
        admin(&[
            "customers",
            "create",
            "--id",
            id,
            "--display-name",
            id,
            "--tier",
            "enterprise",
            "--time-zone",
            "America/Chicago",
            "--account-manager",
            "ayse",
        ]);
    }
    admin(&[
        "customers",
        "contacts",
        "create",
        "acme",
        "--display-name",
        "Deniz Kaya",
        "--email",
        "deniz@acme.example",
        "--role",
        "billing",
        "--client-delegate",
        "--language",
        "tr",
    ]);
    let acme = mint(&["--role", "client", "--account", "acme"]);
    let globex = mint(&["--role", "client", "--account", "globex"]);
    let mira = mint(&["--role", "manager", "--staff-member", "staff/mira"]);

    let filed = ok(
        &[
            "disputes",
            "create",
            "--account",
            "acme",
            "--invoice",
            "INV-9",
            "--period",
            "2026-11-01..2026-11-30",
            "--line",
            "charge=Line rental;billed=2500.00 USD;disputed=2000.00 USD;reason=wrong-rate",
            "--id",
            "d1",
        ],
        &acme,
    );
    assert!(
        filed.contains("disputes/d1  invoice INV-9  draft"),
        "{filed}"
    );
    assert!(ok(&["disputes", "submit", "d1"], &acme).contains("submitted"));
    let hidden = run(&["disputes", "get", "d1"], &globex);
    assert!(!hidden.status.success());
    assert!(text(&hidden).contains("NotFound"), "{}", text(&hidden));

    // Six days on, nobody has vetted it: overdue, in Ayşe's review.
    admin(&["clock", "advance", "144h"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let late = admin(&["disputes", "list", "--filter", "overdue = true"]);
        if late.contains("disputes/d1") {
            break;
        }
        assert!(Instant::now() < deadline, "never overdue: {late}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let review = admin(&["review", "--manager", "ayse"]);
    assert!(review.contains("1 dispute vetting overdue"), "{review}");
    assert!(review.contains("disputes/d1"), "{review}");
    assert!(review.contains("Decide disputes/d1"), "{review}");

    admin(&["disputes", "vet", "d1", "--owner", "ayse"]);
    let mut report = b"%PDF-1.4\n".to_vec();
    report.extend((0..300_000u32).map(|i| (i % 251) as u8));
    std::fs::write(dir.path().join("rate-sheet.pdf"), &report).unwrap();
    let uploaded = admin(&[
        "disputes",
        "upload",
        "d1",
        "rate-sheet.pdf",
        "--type",
        "contract",
    ]);
    assert!(uploaded.contains("application/pdf"), "{uploaded}");
    let doc = uploaded.split_whitespace().next().unwrap().to_string();
    assert!(admin(&["disputes", "documents", "d1"]).contains("rate-sheet.pdf"));
    admin(&["disputes", "download", &doc, "--out", "back.pdf"]);
    assert!(std::fs::read(dir.path().join("back.pdf")).unwrap() == report);

    let proposed = admin(&[
        "disputes",
        "propose",
        "d1",
        "--line",
        "1=full",
        "--reason",
        "Billed at the list rate, not the contract's",
    ]);
    assert!(proposed.contains("approval: pending"), "{proposed}");
    assert!(
        proposed.contains("Whole disputed amount") && proposed.contains("2,000.00 USD"),
        "the working is printed: {proposed}"
    );
    let approved = ok(&["disputes", "approve", "d1"], &mira);
    assert!(approved.contains("invoice INV-9  approved"), "{approved}");
    assert!(
        approved.contains("approval: approved by staff/mira"),
        "{approved}"
    );
    admin(&["disputes", "issue", "d1", "--reference", "CM-9"]);
    admin(&[
        "disputes",
        "publish",
        "d1",
        "--message",
        "Faturanız sözleşme fiyatıyla düzeltildi.",
    ]);
    let theirs = run(&["disputes", "confirm", "d1"], &globex);
    assert!(text(&theirs).contains("NotFound"), "{}", text(&theirs));
    let confirmed = ok(
        &["disputes", "confirm", "d1", "--comment", "Teşekkürler"],
        &acme,
    );
    assert!(confirmed.contains("client_confirmed"), "{confirmed}");

    let outbox = dir.path().join("data").join("outbox-mail");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mail = loop {
        let found = std::fs::read_dir(&outbox)
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .find(|m| m.contains("Content-Language: tr") && m.contains("disputes/d1"));
        if let Some(m) = found {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no position e-mail in {outbox:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(mail.contains("deniz@acme.example"), "{mail}");

    let history = admin(&["disputes", "history", "d1"]);
    for action in [
        "CreateDispute",
        "SubmitDispute",
        "UploadDisputeDocument",
        "ProposeCredit",
        "ApproveCredit",
        "IssueCredit",
        "PublishPosition",
        "ConfirmOutcome",
    ] {
        assert!(history.contains(action), "{action}: {history}");
    }
}

/// `concierge events tail` follows the suite's events through the gateway:
/// staff see internal notes, a client key sees its own account's public
/// ones only and may not ask for another account, and a tail resumes from
/// the cursor the last one printed, with nothing shown twice.
#[test]
fn events_are_followed_from_the_cli_as_each_key_may_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let run = |args: &[&str], key: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .env("CONCIERGE_GATEWAY", &dev.url)
            .env("CONCIERGE_API_KEY", key)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A tail that never gets its events would wait for ever: bound it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{args:?} did not finish in 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let ok = |args: &[&str], key: &str| {
        let out = run(args, key);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    let admin = |args: &[&str]| String::from_utf8_lossy(&ok(args, &dev.key).stdout).to_string();
    let mint = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["keys", "create", "--data-dir", "data", "--json"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    };
    for id in ["acme", "globex"] {
        admin(&[
            "customers",
            "create",
            "--id",
            id,
            "--display-name",
            id,
            "--tier",
            "enterprise",
            "--time-zone",
            "Europe/Istanbul",
        ]);
        admin(&[
            "cases",
            "create",
            "--id",
            id,
            "--account",
            id,
            "--type",
            "repair",
            "--title",
            "Circuit down",
        ]);
    }
    let acme = mint(&["--role", "client", "--account", "acme"]);
    admin(&[
        "cases",
        "note",
        "acme",
        "--body",
        "client is furious; internal",
    ]);
    admin(&[
        "cases",
        "note",
        "globex",
        "--body",
        "globex update",
        "--public",
    ]);
    admin(&[
        "cases",
        "note",
        "acme",
        "--body",
        "engineer on site at 14:00",
        "--public",
    ]);

    let notes = [
        "events",
        "tail",
        "--since",
        "1h",
        "--type",
        "concierge.cases.v1.note_created",
    ];
    let staff = ok(&[&notes[..], &["--limit", "3"]].concat(), &dev.key);
    let lines = String::from_utf8_lossy(&staff.stdout).to_string();
    let shown: Vec<&str> = lines.lines().collect();
    assert_eq!(shown.len(), 3, "{lines}");
    assert!(
        shown[0].contains("cases.v1.note_created  cases/acme/notes/")
            && shown[0].ends_with("(internal)"),
        "{lines}"
    );
    assert!(shown[1].contains("accounts/globex"), "{lines}");

    let client = ok(&[&notes[..], &["--limit", "1"]].concat(), &acme);
    let seen = String::from_utf8_lossy(&client.stdout).to_string();
    assert_eq!(seen.lines().count(), 1, "{seen}");
    assert!(
        seen.contains("cases/acme/notes/") && !seen.contains("(internal)"),
        "the public note, not the internal one: {seen}"
    );
    let cursor = String::from_utf8_lossy(&client.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("resume with: --cursor ").map(str::to_string))
        .expect("the tail says where to resume");

    let refused = run(&["events", "tail", "--account", "globex"], &acme);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("own account"), "{}", text(&refused));

    // Resumed from its cursor, the client's tail shows only what is new.
    admin(&[
        "cases",
        "note",
        "acme",
        "--body",
        "restored at 15:10",
        "--public",
    ]);
    let resumed = ok(
        &[
            "events",
            "tail",
            "--cursor",
            &cursor,
            "--type",
            "concierge.cases.v1.note_created",
            "--limit",
            "1",
            "--json",
        ],
        &acme,
    );
    let event: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(event["type"], "concierge.cases.v1.note_created");
    assert_eq!(event["account"], "accounts/acme");
    assert_eq!(event["payload"]["body"], "restored at 15:10", "{event}");
}

/// A webhook registered from the CLI against `concierge dev` receives the
/// events it asked for, signed with the secret the CLI printed once; a test
/// event follows; the deliveries are listed and the webhook paused.
#[test]
fn a_webhook_is_registered_tested_and_followed_from_the_cli() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    // A receiver that answers 200 and keeps what it got.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    {
        let got = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut signature, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("concierge-signature:") {
                        signature = line["concierge-signature:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                got.lock()
                    .unwrap()
                    .push((signature, String::from_utf8_lossy(&body).to_string()));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
    }
    let run = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    let created = run(&[
        "webhooks",
        "create",
        "--id",
        "crm",
        "--display-name",
        "CRM sync",
        "--url",
        &format!("http://127.0.0.1:{port}/hook"),
        "--type",
        "concierge.customers.v1.account_*",
    ]);
    let shown = String::from_utf8_lossy(&created.stdout).to_string();
    assert!(
        shown.starts_with("webhooks/crm  active  CRM sync"),
        "{shown}"
    );
    let secret = String::from_utf8_lossy(&created.stderr)
        .lines()
        .find_map(|l| {
            l.split_once("(shown once, keep it with the receiver): ")
                .map(|(_, s)| s.to_string())
        })
        .expect("the secret, shown once");
    assert!(!shown.contains(&secret), "the secret is not in the webhook");
    run(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme",
        "--tier",
        "enterprise",
        "--time-zone",
        "Europe/Istanbul",
    ]);
    run(&["webhooks", "test", "crm"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "two POSTs within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The account's event and the test event are delivered independently, so
    // either may arrive first; each arrives once.
    let got = got.lock().unwrap().clone();
    for kind in [
        "concierge.customers.v1.account_created",
        "concierge.gateway.v1.webhook_test",
    ] {
        let needle = format!("\"type\":\"{kind}\"");
        assert_eq!(
            got.iter()
                .filter(|(_, body)| body.contains(&needle))
                .count(),
            1,
            "{kind} once in {got:?}"
        );
    }
    for (signature, body) in &got {
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .expect("a signature");
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), v1);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = String::from_utf8_lossy(
            &run(&[
                "webhooks",
                "deliveries",
                "crm",
                "--filter",
                "state = SUCCEEDED",
            ])
            .stdout,
        )
        .to_string();
        if listed.lines().filter(|l| l.contains("succeeded")).count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "two deliveries listed: {listed}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let paused = String::from_utf8_lossy(&run(&["webhooks", "pause", "crm"]).stdout).to_string();
    assert!(paused.starts_with("webhooks/crm  paused"), "{paused}");

    // The escalation channel: an escalation raised reaches it, and the
    // escalation says so once the gateway reports the delivery.
    run(&[
        "webhooks",
        "create",
        "--id",
        "escalations",
        "--display-name",
        "Escalations channel",
        "--url",
        &format!("http://127.0.0.1:{port}/escalations"),
        "--type",
        "concierge.cases.v1.escalation_raised",
    ]);
    run(&[
        "cases",
        "create",
        "--id",
        "down",
        "--account",
        "acme",
        "--type",
        "repair",
        "--title",
        "Circuit down",
    ]);
    run(&[
        "cases",
        "escalations",
        "raise",
        "down",
        "--team",
        "noc",
        "--reason",
        "no ETA after 4 hours",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = String::from_utf8_lossy(
            &run(&["cases", "escalations", "list", "down", "--json"]).stdout,
        )
        .to_string();
        if listed.contains("STATE_DELIVERED") && listed.contains("webhooks/escalations/deliveries/")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the escalation delivered: {listed}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A survey set up, sent by hand, followed and withdrawn from the CLI; a
/// template a trigger sends stays until the trigger goes.
#[test]
fn surveys_are_set_up_sent_and_withdrawn_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let call = |args: &[&str]| {
        cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        )
    };
    let run = |args: &[&str]| {
        let out = call(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme",
        "--tier",
        "enterprise",
        "--time-zone",
        "Europe/Istanbul",
    ]);
    run(&[
        "customers",
        "contacts",
        "create",
        "acme",
        "--id",
        "ali",
        "--display-name",
        "Ali Kaya",
        "--email",
        "ali@acme.example",
        "--role",
        "primary",
        "--language",
        "en",
    ]);
    run(&[
        "cases",
        "create",
        "--account",
        "acme",
        "--type",
        "inquiry",
        "--title",
        "Invoice copy",
        "--id",
        "c1",
    ]);
    let template = run(&[
        "csat",
        "templates",
        "create",
        "--id",
        "nps",
        "--display-name",
        "NPS",
        "--kind",
        "nps",
        "--question",
        "en=How likely are you to recommend us?",
        "--question",
        "tr=Bizi tavsiye eder misiniz?",
        "--comment-prompt",
        "en=Why?",
    ]);
    assert!(
        template
            .starts_with("surveyTemplates/nps  nps_0_10  NPS  default language en, with a comment"),
        "{template}"
    );
    let off_scale = call(&[
        "csat",
        "templates",
        "create",
        "--display-name",
        "Bad",
        "--kind",
        "stars",
        "--question",
        "en=?",
    ]);
    assert!(!off_scale.status.success());
    assert!(
        text(&off_scale).contains("\"stars\" is not a survey kind"),
        "{}",
        text(&off_scale)
    );
    let trigger = run(&[
        "csat",
        "triggers",
        "create",
        "--id",
        "resolved",
        "--display-name",
        "Resolved",
        "--template",
        "nps",
        "--case-type",
        "inquiry",
        "--delay",
        "2h",
        "--suppression-days",
        "30",
    ]);
    assert!(
        trigger.contains("surveyTriggers/resolved  enabled  Resolved"),
        "{trigger}"
    );
    assert!(
        trigger.contains("on case_resolved of inquiry, sends surveyTemplates/nps after 2h"),
        "{trigger}"
    );
    assert!(run(&["csat", "triggers", "disable", "resolved"]).contains("disabled"));

    let in_use = call(&["csat", "templates", "delete", "nps"]);
    assert!(!in_use.status.success());
    assert!(
        text(&in_use).contains("surveyTriggers/resolved sends surveyTemplates/nps"),
        "{}",
        text(&in_use)
    );

    let sent = run(&[
        "csat",
        "surveys",
        "send",
        "--case",
        "c1",
        "--template",
        "nps",
        "--contact",
        "accounts/acme/contacts/ali",
    ]);
    let survey = sent.split_whitespace().next().unwrap().to_string();
    assert!(survey.starts_with("surveys/"), "{sent}");
    // The sweep sends it within a second or so; the e-mail is in the mail folder.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(&["csat", "surveys", "get", &survey]).contains("  sent  ") {
        assert!(Instant::now() < deadline, "the survey is sent within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = run(&["csat", "surveys", "list", "--filter", "state = SENT"]);
    assert!(
        listed.contains(&survey) && listed.contains("1 survey(s)"),
        "{listed}"
    );
    let mails: Vec<_> = std::fs::read_dir(dir.path().join("data/outbox-mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("ali@acme.example") && mails[0].contains("/surveys/respond?token="));

    let cancelled = run(&[
        "csat",
        "surveys",
        "cancel",
        &survey,
        "--reason",
        "sent by mistake",
    ]);
    assert!(cancelled.contains("  cancelled  "), "{cancelled}");
    // Sent, never answered: it counts as sent this month, and Acme has no
    // answer to read a level from.
    let scores = run(&["csat", "scores", "--by", "account"]);
    let acme = scores
        .lines()
        .find(|l| l.starts_with("accounts/acme"))
        .unwrap_or_else(|| panic!("{scores}"));
    assert_eq!(
        acme.split_whitespace().collect::<Vec<_>>(),
        vec![
            "accounts/acme",
            "-",
            "(0)",
            "-",
            "(0)",
            "-",
            "(0)",
            "1",
            "0.0"
        ],
        "{scores}"
    );
    let level = run(&["csat", "satisfaction", "acme"]);
    assert!(level.contains("accounts/acme  no_data  no_data"), "{level}");
    run(&["csat", "triggers", "delete", "resolved"]);
    assert_eq!(
        run(&["csat", "templates", "delete", "nps"]).trim(),
        "deleted surveyTemplates/nps"
    );
}

/// A corrective action past its due time is a finding of the account
/// manager's review until it is done; the plan is then completed.
#[test]
fn an_overdue_corrective_action_is_in_the_portfolio_review() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let run = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&[
        "customers",
        "staff",
        "create",
        "--id",
        "ayse",
        "--display-name",
        "Ayse",
        "--email",
        "ayse@example.com",
        "--role",
        "account_manager",
    ]);
    run(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
        "--account-manager",
        "staff/ayse",
    ]);
    let created = run(&[
        "csat",
        "plans",
        "create",
        "--id",
        "win-back",
        "--account",
        "acme",
        "--title",
        "Win back Acme",
        "--owner",
        "ayse",
        "--action",
        "Call the CFO;due=2026-01-05T15:00:00Z;owner=ayse",
        "--action",
        "Quarterly review",
    ]);
    assert!(
        created.starts_with("correctiveActionPlans/win-back  open (overdue)  Win back Acme"),
        "{created}"
    );
    assert!(
        created.contains("[1] open (overdue)  Call the CFO  due 2026-01-05 15:00  staff/ayse"),
        "{created}"
    );
    let listed = run(&["csat", "plans", "list", "--filter", "overdue = true"]);
    assert!(
        listed.contains("correctiveActionPlans/win-back") && listed.contains("1 plan(s)"),
        "{listed}"
    );

    let review = run(&["review", "--manager", "ayse"]);
    assert!(
        review.contains("correctiveActionPlans/win-back"),
        "{review}"
    );
    assert!(review.contains("Acme Corp"), "{review}");
    assert!(
        review.contains("Chase the overdue corrective action of Win back Acme"),
        "{review}"
    );

    let acted = run(&[
        "csat", "plans", "act", "win-back", "1", "--state", "done", "--note", "Called",
    ]);
    assert!(
        acted.starts_with("correctiveActionPlans/win-back  open  "),
        "{acted}"
    );
    assert!(!run(&["review", "--manager", "ayse"]).contains("win-back"));
    run(&[
        "csat",
        "plans",
        "act",
        "win-back",
        "2",
        "--state",
        "cancelled",
    ]);
    let completed = run(&[
        "csat",
        "plans",
        "complete",
        "win-back",
        "--outcome",
        "Renewed",
    ]);
    assert!(
        completed.starts_with("correctiveActionPlans/win-back  completed  "),
        "{completed}"
    );
}

#[test]
fn kpis_targets_and_availability_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start_dev(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    );
    let run = |args: &[&str]| {
        let out = cli_in(
            dir.path(),
            &dev,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // October: Ali scheduled 8 h and available 6 of them, Veli 7 of 8; the
    // second file corrects one row by its external id.
    std::fs::write(
        dir.path().join("october.csv"),
        "staff_member,kind,start_time,end_time,source,external_id\n\
         ali,scheduled,2026-10-05T09:00:00Z,2026-10-05T17:00:00Z,incontact,a1\n\
         ali,available,2026-10-05T09:00:00Z,2026-10-05T12:00:00Z,incontact,a2\n\
         ali,on-call,2026-10-05T12:00:00Z,2026-10-05T13:00:00Z,incontact,a3\n\
         ali,break,2026-10-05T13:00:00Z,2026-10-05T14:00:00Z,incontact,a4\n\
         ali,available,2026-10-05T14:00:00Z,2026-10-05T15:00:00Z,incontact,a5\n\
         veli,scheduled,2026-10-05T09:00:00Z,2026-10-05T17:00:00Z,incontact,v1\n\
         veli,available,2026-10-05T09:00:00Z,2026-10-05T16:00:00Z,incontact,v2\n",
    )
    .unwrap();
    let imported = run(&["csat", "availability", "import", "-f", "october.csv"]);
    assert_eq!(imported.trim(), "7 of 7 interval(s) stored");
    std::fs::write(
        dir.path().join("fix.csv"),
        "staff_member,kind,start_time,end_time,source,external_id\n\
         ali,available,2026-10-05T14:00:00Z,2026-10-05T16:00:00Z,incontact,a5\n",
    )
    .unwrap();
    run(&["csat", "availability", "import", "-f", "fix.csv"]);
    let listed = run(&[
        "csat",
        "availability",
        "list",
        "--filter",
        "staff_member = \"staff/ali\" AND kind = AVAILABLE",
    ]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("2026-10-05T14:00:00Z - 2026-10-05T16:00:00Z  incontact:a5"),
        "{listed}"
    );
    std::fs::write(
        dir.path().join("bad.csv"),
        "staff_member,kind,start_time,end_time,source,external_id\n\
         ali,lunch,2026-10-05T14:00:00Z,2026-10-05T16:00:00Z,incontact,a9\n",
    )
    .unwrap();
    let bad = cli_in(
        dir.path(),
        &dev,
        &["csat", "availability", "import", "-f", "bad.csv"].map(String::from),
    );
    assert!(!bad.status.success());
    assert!(text(&bad).contains("bad.csv line 2"), "{}", text(&bad));

    let kpis = run(&[
        "csat",
        "kpis",
        "--from",
        "2026-10",
        "--kind",
        "agent-availability",
        "--by",
        "agent",
    ]);
    assert!(
        kpis.contains(
            "staff/ali   agent_availability  75.0% (21600 of 28800)  1  at least 75%  met"
        ),
        "{kpis}"
    );
    assert!(
        kpis.contains("staff/veli  agent_availability  87.5%"),
        "{kpis}"
    );
    let set = run(&[
        "csat",
        "kpi-targets",
        "set",
        "agent-availability",
        "--min-percent",
        "80",
    ]);
    assert_eq!(set.trim(), "agent_availability  at least 80%");
    run(&[
        "csat",
        "kpi-targets",
        "set",
        "first-response-time",
        "--max-duration",
        "4h",
    ]);
    let targets = run(&["csat", "kpi-targets", "get"]);
    assert!(
        targets.contains("first_response_time  mean at most 4h"),
        "{targets}"
    );
    let kpis = run(&[
        "csat",
        "kpis",
        "--from",
        "2026-10",
        "--kind",
        "agent-availability",
        "--by",
        "agent",
    ]);
    assert!(kpis.contains("at least 80%  missed"), "{kpis}");
    let refused = cli_in(
        dir.path(),
        &dev,
        &[
            "csat",
            "kpi-targets",
            "set",
            "credits-granted",
            "--min-percent",
            "5",
        ]
        .map(String::from),
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused)
            .contains("kpi_settings.targets[2].kind: credits granted are sums per currency"),
        "{}",
        text(&refused)
    );

    // A case resolved now counts in this month's time to resolve once the
    // CSAT service has its events.
    run(&[
        "customers",
        "create",
        "--id",
        "acme",
        "--display-name",
        "Acme Corp",
        "--tier",
        "enterprise",
        "--time-zone",
        "America/Chicago",
    ]);
    run(&[
        "cases",
        "create",
        "--id",
        "q1",
        "--account",
        "acme",
        "--type",
        "inquiry",
        "--title",
        "Invoice question",
    ]);
    run(&["cases", "open", "q1"]);
    run(&[
        "cases",
        "resolve",
        "q1",
        "--root-cause",
        "Answered",
        "--code",
        "FIXED",
        "--summary",
        "Explained",
    ]);
    let mut resolved = String::new();
    for _ in 0..200 {
        resolved = run(&["csat", "kpis", "--kind", "time-to-resolve"]);
        if resolved.contains("time_to_resolve  mean") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(resolved.contains("time_to_resolve  mean"), "{resolved}");

    // October's report for the whole company: the page with its charts,
    // the KPIs, listed, its CSV written out, e-mailed on.
    let report = run(&[
        "report",
        "monthly",
        "generate",
        "--month",
        "2026-10",
        "--html",
        "october.html",
    ]);
    let name = report.split_whitespace().next().unwrap().to_string();
    assert!(name.starts_with("monthlyReports/"), "{report}");
    assert!(report.contains("2026-10  The whole company"), "{report}");
    let page = std::fs::read_to_string(dir.path().join("october.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 3);
    assert!(page.contains("Agent availability"));
    let listed_reports = run(&["report", "monthly", "list", "--filter", "month.month = 10"]);
    assert!(
        listed_reports.contains(&name) && listed_reports.contains("on_demand"),
        "{listed_reports}"
    );
    let opened = run(&[
        "report",
        "monthly",
        "open",
        &name,
        "--csv",
        "--out",
        "october.csv",
    ]);
    assert!(opened.trim().ends_with("october.csv"), "{opened}");
    let csv = std::fs::read_to_string(dir.path().join("october.csv")).unwrap();
    assert!(
        csv.contains("kpi,agent_availability,percent,81.25\n"),
        "(6 h + 7 h) of 16 h: {csv}"
    );
    let sent = run(&[
        "report",
        "monthly",
        "send",
        &name,
        "--to",
        "board@example.com",
    ]);
    assert!(sent.contains("to board@example.com"), "{sent}");

    let first = listed.split_whitespace().next().unwrap().to_string();
    let deleted = run(&["csat", "availability", "delete", &first]);
    assert_eq!(deleted.trim(), format!("deleted {first}"));
}
