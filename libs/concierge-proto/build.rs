//! Compiles every `.proto` under `proto/concierge` with protox, so no system
//! `protoc` is needed, keeps the descriptor set for gRPC reflection, and
//! turns each domain's event catalogue (its `EventType` enum and the
//! `concierge.events.v1` options on every value) into Rust, so that the
//! payload a service may send with an event is the one the contract declares.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prost_reflect::{DescriptorPool, EnumDescriptor};

fn protos(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("proto dir is readable") {
        let path = entry.expect("proto dir entry").path();
        if path.is_dir() {
            protos(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut files = Vec::new();
    protos(&root.join("concierge"), &mut files);
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());

    let mut compiler = protox::Compiler::new([&root])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // Encoded by protox itself so that custom options (the event
    // catalogue's) survive for reflection clients.
    std::fs::write(
        out.join("concierge_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    std::fs::write(
        out.join("catalogue.rs"),
        catalogues(&compiler.descriptor_pool())?,
    )?;
    let fds = compiler.file_descriptor_set();
    let mut config = prost_build::Config::new();
    // `prost::Name` lets events pack resources into `google.protobuf.Any`.
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Deterministic encoding of maps, so a retried request hashes the
        // same for request_id idempotency.
        .btree_map(".")
        .include_file("concierge.rs")
        // Methods a service does not implement yet answer UNIMPLEMENTED: the
        // cases contract carries the chase, escalation, triage and control
        // document methods of the next issue already, so that it never breaks.
        .generate_default_stubs(true)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}

const PREFIX: &str = "EVENT_TYPE_";

/// One value of a domain's `EventType` enum, with what it declares.
struct Declared {
    /// e.g. `CASE_RESOLVED`: the value's name without `EVENT_TYPE_`.
    name: String,
    /// The prost variant, e.g. `CaseResolved`.
    variant: String,
    /// e.g. `concierge.cases.v1.case_resolved`.
    event_type: String,
    /// e.g. `concierge.cases.v1.Case`.
    payload: String,
    /// The Rust path of the payload, e.g. `crate::concierge::cases::v1::Case`.
    payload_path: String,
    /// `Public` or `Internal`.
    audience: String,
}

/// The Rust of every `<package>.EventType` enum whose values carry the
/// catalogue options: a `Catalogue` impl for the enum, a module of typed
/// event constants per domain, and the lifecycle traits (`Created`, …) for
/// each payload that has an event named `<payload>_<verb>`.
fn catalogues(pool: &DescriptorPool) -> Result<String, Box<dyn std::error::Error>> {
    let payload_option = pool
        .get_extension_by_name("concierge.events.v1.payload")
        .ok_or("concierge/events/v1/catalogue.proto declares no `payload` option")?;
    let audience_option = pool
        .get_extension_by_name("concierge.events.v1.audience")
        .ok_or("concierge/events/v1/catalogue.proto declares no `audience` option")?;
    let mut code = String::new();
    let mut enums: Vec<EnumDescriptor> = pool
        .all_enums()
        .filter(|e| e.name() == "EventType" && e.parent_message().is_none())
        .filter(|e| e.package_name().starts_with("concierge."))
        .collect();
    enums.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    for e in enums {
        let package = e.package_name();
        let module_path = format!("crate::{}", package.replace('.', "::"));
        let domain = package
            .strip_prefix("concierge.")
            .and_then(|p| p.strip_suffix(".v1"))
            .ok_or_else(|| format!("{}: not a concierge.<domain>.v1 catalogue", e.full_name()))?;
        let mut declared = Vec::new();
        for v in e.values() {
            if v.number() == 0 {
                continue;
            }
            let name = v
                .name()
                .strip_prefix(PREFIX)
                .ok_or_else(|| format!("{}: must start with {PREFIX}", v.full_name()))?
                .to_string();
            let options = v.options();
            if !options.has_extension(&payload_option) || !options.has_extension(&audience_option) {
                return Err(format!(
                    "{} must declare both (concierge.events.v1.payload) and (concierge.events.v1.audience)",
                    v.full_name()
                )
                .into());
            }
            let payload = options
                .get_extension(&payload_option)
                .as_str()
                .unwrap_or_default()
                .to_string();
            let message = pool
                .get_message_by_name(&payload)
                .ok_or_else(|| format!("{}: payload {payload:?} is no message", v.full_name()))?;
            if message.parent_message().is_some() {
                return Err(
                    format!("{}: a payload must be a top-level message", v.full_name()).into(),
                );
            }
            let audience = match options.get_extension(&audience_option).as_enum_number() {
                Some(1) => "Internal",
                Some(2) => "Public",
                _ => {
                    return Err(format!(
                        "{}: the audience is VISIBILITY_INTERNAL or VISIBILITY_PUBLIC",
                        v.full_name()
                    )
                    .into());
                }
            };
            declared.push(Declared {
                variant: name
                    .split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| {
                                f.to_ascii_uppercase().to_string()
                                    + &c.as_str().to_ascii_lowercase()
                            })
                            .unwrap_or_default()
                    })
                    .collect(),
                event_type: format!("{package}.{}", name.to_ascii_lowercase()),
                payload_path: format!(
                    "crate::{}::{}",
                    message.package_name().replace('.', "::"),
                    message.name()
                ),
                payload,
                audience: audience.to_string(),
                name,
            });
        }

        writeln!(
            code,
            "impl Catalogue for {module_path}::EventType {{\n    const DECLARED: &'static [Declared<Self>] = &["
        )?;
        for d in &declared {
            writeln!(
                code,
                "        Declared {{ event: Self::{}, event_type: {:?}, payload: {:?}, audience: Visibility::{} }},",
                d.variant, d.event_type, d.payload, d.audience
            )?;
        }
        writeln!(code, "    ];\n}}\n")?;

        writeln!(
            code,
            "/// The events of `{}`, typed by their payload: what a service names to record one.\npub mod {domain} {{\n    use super::*;",
            e.full_name()
        )?;
        for d in &declared {
            writeln!(
                code,
                "    /// `{}`: a [`{}`] ({} audience).\n    pub const {}: EventOf<{}> = EventOf::declared({:?}, Visibility::{});",
                d.event_type,
                d.payload_path,
                d.audience.to_ascii_lowercase(),
                d.name,
                d.payload_path,
                d.event_type,
                d.audience
            )?;
        }
        for d in &declared {
            let snake = snake_case(&d.payload[d.payload.rfind('.').map_or(0, |i| i + 1)..]);
            for (verb, lifecycle, constant) in [
                ("CREATED", "Created", "CREATED"),
                // An escalation is raised, not created: the event keeps the
                // word the escalation channel subscribes to.
                ("RAISED", "Created", "CREATED"),
                ("UPDATED", "Updated", "UPDATED"),
                ("DELETED", "Deleted", "DELETED"),
                ("UNDELETED", "Undeleted", "UNDELETED"),
            ] {
                if d.name == format!("{}_{verb}", snake.to_ascii_uppercase()) {
                    writeln!(
                        code,
                        "    impl {lifecycle} for {} {{\n        const {constant}: EventOf<Self> = {};\n    }}",
                        d.payload_path, d.name
                    )?;
                }
            }
        }
        writeln!(code, "}}\n")?;
    }
    Ok(code)
}

/// `HandOffCode` → `hand_off_code`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
