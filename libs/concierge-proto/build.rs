//! Compiles every `.proto` under `proto/concierge` with protox, so no system
//! `protoc` is needed, and keeps the descriptor set for gRPC reflection.

use std::path::{Path, PathBuf};

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

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("concierge_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
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
