//! How client commands print: a short human-readable form by default, the
//! canonical proto3 JSON mapping with `--json` (so scripts can pipe to jq).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(concierge_proto::FILE_DESCRIPTOR_SET)
            .expect("the built-in descriptor set decodes")
    })
}

/// A message as proto3 JSON.
pub fn json<M: prost::Message + prost::Name>(message: &M) -> anyhow::Result<String> {
    let descriptor = pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| anyhow::anyhow!("no descriptor for {}", M::full_name()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::pretty(&mut out);
    dynamic.serialize_with_options(
        &mut ser,
        &SerializeOptions::new().stringify_64_bit_integers(false),
    )?;
    Ok(String::from_utf8(out)?)
}

/// A message as proto3 JSON on one line, for streams read line by line.
pub fn json_line<M: prost::Message + prost::Name>(message: &M) -> anyhow::Result<String> {
    let descriptor = pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| anyhow::anyhow!("no descriptor for {}", M::full_name()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    dynamic.serialize_with_options(
        &mut ser,
        &SerializeOptions::new().stringify_64_bit_integers(false),
    )?;
    Ok(String::from_utf8(out)?)
}

/// A fixed-width table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

/// An enum value without its type prefix, lower case: `TIER_ENTERPRISE` → `enterprise`.
pub fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// Prints a reply: proto3 JSON with `--json`, else as `text` renders it.
pub fn emit<M: prost::Message + prost::Name>(
    json: bool,
    message: &M,
    text: impl FnOnce(&M),
) -> anyhow::Result<()> {
    if json {
        println!("{}", self::json(message)?);
    } else {
        text(message);
    }
    Ok(())
}

/// An enum value from the command line: `enterprise`, `ENTERPRISE` or
/// `TIER_ENTERPRISE`, dashes for underscores.
pub fn parse_enum(
    value: &str,
    prefix: &str,
    parse: fn(&str) -> Option<i32>,
    what: &str,
) -> anyhow::Result<i32> {
    let upper = value.to_ascii_uppercase().replace('-', "_");
    parse(&upper)
        .or_else(|| parse(&format!("{prefix}{upper}")))
        .filter(|v| *v != 0)
        .ok_or_else(|| anyhow::anyhow!("{value:?} is not a {what}"))
}

/// A gRPC reply's message, or its failure spelled out for a person.
pub trait Answer<T> {
    fn answer(self) -> anyhow::Result<T>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answer(self) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner).map_err(rpc)
    }
}

/// A failed call, with every field violation and precondition spelled out.
pub fn rpc(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(concierge_sdk::describe(&e))
}

/// What to pass for the next page, after a table; empty on the last page.
pub fn next_page(token: &str) -> String {
    if token.is_empty() {
        String::new()
    } else {
        format!("\nnext page: --page-token {token}")
    }
}

/// The paging and filtering flags every list command takes.
#[derive(clap::Args)]
pub struct ListArgs {
    /// AIP-160 filter over this list's fields (examples above; an unknown
    /// field's error lists the ones it takes).
    #[arg(long, default_value = "")]
    pub filter: String,
    /// Fields to sort by, each optionally followed by desc, comma-separated.
    #[arg(long, default_value = "")]
    pub order_by: String,
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// Follow page tokens to the end.
    #[arg(long)]
    pub all: bool,
}

/// One page of a list method, or with `--all` every page: (items, the next
/// page token).
macro_rules! paged {
    ($list:expr, $req:expr, $client:ident . $method:ident, $field:ident) => {{
        let mut req = $req;
        let mut items = Vec::new();
        loop {
            let resp = $crate::output::Answer::answer($client.$method(req.clone()).await)?;
            items.extend(resp.$field);
            if !$list.all || resp.next_page_token.is_empty() {
                break (items, resp.next_page_token);
            }
            req.page_token = resp.next_page_token;
        }
    }};
}
pub(crate) use paged;
