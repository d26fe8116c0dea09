//! `concierge bench disputes`: the credit calculation against a bare
//! integer multiply-divide; a dispute's create and five transitions through
//! the gateway against straight to the service; a document's upload and
//! download against copying the file. Each pair measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_common::clock::{SharedClock, SystemClock};
use concierge_common::kit::{InProcess, Shared, Workers};
use concierge_common::principal::{PRINCIPAL_HEADER, Principal, PrincipalCodec, Role};
use concierge_common::storage::Db;
use concierge_common::supervise::Supervisor;
use concierge_disputes::credit::{Calculate, calculate};
use concierge_disputes::resources::default_settings;
use concierge_gateway::{Gateway, Limits, keys};
use concierge_proto::disputes::disputes_service_client::DisputesServiceClient;
use concierge_proto::disputes::*;
use concierge_proto::types::Money;
use sha2::Digest;
use tonic::transport::Channel;

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "USD".into(),
        minor_units: minor,
    })
}

/// Credits calculated per second against the multiply-divide with half-even
/// rounding alone, on the same inputs.
fn credit_throughput(rounds: usize) -> anyhow::Result<()> {
    let tiers = default_settings().sla_credit_tiers;
    let start: jiff::Timestamp = "2026-11-01T00:00:00Z".parse()?;
    let end: jiff::Timestamp = "2026-12-01T00:00:00Z".parse()?;
    let inputs = |i: usize| CreditInputs {
        billed_amount: usd(120_000),
        disputed_amount: usd(120_000),
        mrc: usd(120_000 + (i % 1000) as i64),
        outage_duration: Some(prost_types::Duration {
            seconds: 27_000 + (i % 3600) as i64,
            nanos: 0,
        }),
        period_start_time: Some(concierge_common::clock::to_proto(start)),
        period_end_time: Some(concierge_common::clock::to_proto(end)),
        ..Default::default()
    };
    let now = jiff::Timestamp::now();
    let t = Instant::now();
    let mut sum = 0i64;
    for i in 0..rounds {
        let c = calculate(
            "inputs",
            Calculate {
                line_id: "1",
                method: CreditMethod::ProratedOutage,
                inputs: inputs(i),
                rounding: RoundingMode::HalfEven,
                default_tiers: &tiers,
                now,
            },
        )?;
        sum += c.result.map(|m| m.minor_units).unwrap_or_default();
    }
    let full = t.elapsed();
    black_box(sum);
    let period = end.duration_since(start).as_nanos();
    let t = Instant::now();
    let mut sum = 0i128;
    for i in 0..rounds {
        let mrc = black_box(120_000i128 + (i % 1000) as i128);
        let outage = black_box(i128::from(27_000 + (i % 3600) as i64) * 1_000_000_000);
        let num = mrc * outage;
        let (q, r) = (num / period, num % period);
        sum += if 2 * r > period || (2 * r == period && q % 2 == 1) {
            q + 1
        } else {
            q
        };
    }
    let bare = t.elapsed();
    black_box(sum);
    let per_sec = |d: Duration| rounds as f64 / d.as_secs_f64();
    println!("CalculateCredit (prorated outage, pure function), {rounds} rounds");
    println!(
        "  calculations/s {:>14.0}  ({:.3?} each)",
        per_sec(full),
        full / rounds as u32
    );
    println!(
        "  multiply-divide/s {:>11.0}  ({:.3?} each)",
        per_sec(bare),
        bare / rounds as u32
    );
    println!(
        "  ratio calculation ÷ bare arithmetic: {:.1}x the time (the steps, their text and the checks)",
        bare.as_secs_f64().max(f64::MIN_POSITIVE).recip() * full.as_secs_f64()
    );
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// `m` with the caller's credentials.
fn signed<M>(auth: &(&'static str, String), m: M) -> tonic::Request<M> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut()
        .insert(auth.0, auth.1.parse().expect("an ASCII header"));
    r
}

/// Creates a dispute and takes it through five transitions; returns how
/// long it took.
async fn one_dispute(
    c: &mut DisputesServiceClient<Channel>,
    auth: &(&'static str, String),
    i: usize,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let d = c
        .create_dispute(signed(
            auth,
            CreateDisputeRequest {
                dispute: Some(Dispute {
                    account: "accounts/bench".into(),
                    invoice_number: format!("INV-{i}"),
                    lines: vec![DisputeLine {
                        charge_description: "Line rental".into(),
                        billed_amount: usd(10_000),
                        disputed_amount: usd(5_000),
                        reason: DisputeReason::Duplicate as i32,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                dispute_id: String::new(),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
        ))
        .await?
        .into_inner();
    let name = d.name;
    c.submit_dispute(signed(
        auth,
        SubmitDisputeRequest {
            name: name.clone(),
            ..Default::default()
        },
    ))
    .await?;
    c.start_dispute_vetting(signed(
        auth,
        StartDisputeVettingRequest {
            name: name.clone(),
            ..Default::default()
        },
    ))
    .await?;
    c.request_dispute_information(signed(
        auth,
        RequestDisputeInformationRequest {
            name: name.clone(),
            question: "Which invoice line?".into(),
            ..Default::default()
        },
    ))
    .await?;
    c.provide_dispute_information(signed(
        auth,
        ProvideDisputeInformationRequest {
            name: name.clone(),
            answer: "Line 3".into(),
            ..Default::default()
        },
    ))
    .await?;
    c.deny_dispute(signed(
        auth,
        DenyDisputeRequest {
            name,
            reason: "billed once only".into(),
            ..Default::default()
        },
    ))
    .await?;
    Ok(t.elapsed())
}

async fn disputes_through(
    url: &str,
    auth: (&'static str, String),
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut c = DisputesServiceClient::new(channel)
        .max_decoding_message_size(8 * 1024 * 1024)
        .max_encoding_message_size(8 * 1024 * 1024);
    for i in 0..count.min(20) {
        one_dispute(&mut c, &auth, i).await?;
    }
    let mut all = Vec::with_capacity(count);
    for i in 0..count {
        all.push(one_dispute(&mut c, &auth, i).await?);
    }
    all.sort();
    Ok(all)
}

/// The document's round trip through the gateway: (upload, download).
async fn document_round_trip(
    url: &str,
    auth: &(&'static str, String),
    dispute: &str,
    content: &[u8],
) -> anyhow::Result<(Duration, Duration)> {
    use upload_dispute_document_request::Payload;
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut c = DisputesServiceClient::new(channel).max_decoding_message_size(8 * 1024 * 1024);
    let sha = hex::encode(sha2::Sha256::digest(content));
    let mut messages = vec![UploadDisputeDocumentRequest {
        payload: Some(Payload::Upload(DisputeDocumentUpload {
            parent: dispute.into(),
            dispute_document: Some(DisputeDocument {
                r#type: dispute_document::Type::OutageReport as i32,
                display_name: "monitoring-export.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: i64::try_from(content.len())?,
                sha256: sha.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }];
    messages.extend(
        content
            .chunks(1024 * 1024)
            .map(|c| UploadDisputeDocumentRequest {
                payload: Some(Payload::Chunk(c.to_vec())),
            }),
    );
    let mut up = tonic::Request::new(futures::stream::iter(messages));
    up.metadata_mut().insert(auth.0, auth.1.parse()?);
    up.set_timeout(Duration::from_secs(300));
    let t = Instant::now();
    let doc = c.upload_dispute_document(up).await?.into_inner();
    let upload = t.elapsed();
    let mut down = tonic::Request::new(DownloadDisputeDocumentRequest {
        name: doc.name.clone(),
    });
    down.metadata_mut().insert(auth.0, auth.1.parse()?);
    down.set_timeout(Duration::from_secs(300));
    let t = Instant::now();
    let mut stream = c.download_dispute_document(down).await?.into_inner();
    let mut back = sha2::Sha256::new();
    let mut n = 0usize;
    while let Some(m) = stream.message().await? {
        if let Some(download_dispute_document_response::Payload::Chunk(bytes)) = m.payload {
            n += bytes.len();
            back.update(&bytes);
        }
    }
    let download = t.elapsed();
    anyhow::ensure!(
        n == content.len() && hex::encode(back.finalize()) == sha,
        "the download differs from the upload"
    );
    Ok((upload, download))
}

pub async fn run(rounds: usize, disputes: usize, document_mib: usize) -> anyhow::Result<()> {
    credit_throughput(rounds)?;

    let dir = std::env::temp_dir().join(format!("concierge-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let codec = PrincipalCodec::new(uuid::Uuid::new_v4().to_string().into());
    let clock: SharedClock = Arc::new(SystemClock);
    let supervisor = Supervisor::default();
    let files = concierge_common::files::Files::local(&dir.join("files"))?;
    let suite = InProcess::start(
        &crate::runtime::services(),
        async |service| {
            Db::connect(
                &format!(
                    "sqlite://{}?mode=rwc",
                    dir.join(format!("{}.db", service.name)).display()
                ),
                8,
            )
            .await
        },
        &Shared {
            principals: codec.clone(),
            clock: clock.clone(),
            mail: Arc::new(concierge_common::mail::Mailer::Off),
            files,
            public_url: "http://127.0.0.1:50051".into(),
        },
        &supervisor,
        |service| Workers {
            instance: format!("{}-bench", service.name),
            poll: Duration::from_secs(1),
            bus: None,
        },
    )
    .await?;
    let gateway_db = Db::connect(
        &format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display()),
        4,
    )
    .await?;
    let limits = Limits {
        requests_per_second: 10_000_000,
        burst: 10_000_000,
        default_deadline: Duration::from_secs(300),
        max_deadline: Duration::from_secs(300),
        ..Limits::default()
    };
    let gw = Gateway::open(
        gateway_db.clone(),
        codec.clone(),
        clock.clone(),
        limits,
        None,
        suite.backends(),
        None,
    )
    .await?;
    let gateway = super::gateway::on_loopback(gw.routes()).await?;
    let gateway_url = format!("http://{}", gateway.addr);
    let direct = super::gateway::on_loopback(
        suite
            .opened
            .iter()
            .find(|(r, _)| r.name == "disputes")
            .map(|(_, s)| s.routes())
            .ok_or_else(|| anyhow::anyhow!("no disputes service"))?,
    )
    .await?;
    let direct_url = format!("http://{}", direct.addr);
    let key = keys::mint(
        &gateway_db,
        keys::NewKey {
            role: Role::Admin,
            account: None,
            staff_member: None,
            display_name: "bench".into(),
            expire_time: None,
        },
        clock.now(),
    )
    .await?;
    let sdk = concierge_sdk::Client::builder(gateway_url.clone())
        .api_key(key.key.clone())
        .build()?;
    sdk.customers()
        .create_account(concierge_proto::customers::CreateAccountRequest {
            account: Some(concierge_proto::customers::Account {
                display_name: "Bench Corp".into(),
                tier: concierge_proto::customers::Tier::Enterprise as i32,
                time_zone: "America/Chicago".into(),
                ..Default::default()
            }),
            account_id: "bench".into(),
            request_id: String::new(),
        })
        .await?;
    let admin = Principal {
        subject: "apiKeys/bench".into(),
        role: Role::Admin,
        account: None,
        staff_member: None,
        display_name: "bench".into(),
    };
    let signed = (
        PRINCIPAL_HEADER,
        codec.encode(&admin, concierge_disputes::SERVICE_NAME),
    );
    let bearer = ("authorization", format!("Bearer {}", key.key));

    let d = disputes_through(&direct_url, signed.clone(), disputes).await?;
    let g = disputes_through(&gateway_url, bearer.clone(), disputes).await?;
    println!(
        "\nCreateDispute + 5 transitions (submit, vet, ask, answer, deny), {disputes} disputes one after another, SQLite"
    );
    println!(
        "{:<22} {:>12} {:>12} {:>12}",
        "path", "p50", "p99", "disputes/s"
    );
    for (label, s) in [("direct to service", &d), ("through gateway", &g)] {
        let total: Duration = s.iter().sum();
        println!(
            "{label:<22} {:>12.3?} {:>12.3?} {:>12.1}",
            pct(s, 0.5),
            pct(s, 0.99),
            s.len() as f64 / total.as_secs_f64()
        );
    }
    println!(
        "gateway ÷ direct, p50: {:.2}",
        pct(&g, 0.5).as_secs_f64() / pct(&d, 0.5).as_secs_f64()
    );

    // A document of `document_mib`, up and down through the gateway, against
    // copying the same bytes from one file to another on the same disk.
    let settings = sdk
        .disputes()
        .get_dispute_settings(GetDisputeSettingsRequest {
            name: "disputeSettings".into(),
        })
        .await?
        .into_inner();
    let size = document_mib * 1024 * 1024;
    sdk.disputes()
        .update_dispute_settings(UpdateDisputeSettingsRequest {
            dispute_settings: Some(DisputeSettings {
                max_document_size_bytes: i64::try_from(size)? + 1,
                ..settings
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_document_size_bytes".into()],
            }),
        })
        .await?;
    let mut c = DisputesServiceClient::new(
        tonic::transport::Endpoint::from_shared(gateway_url.clone())?
            .connect()
            .await?,
    );
    let mut create = tonic::Request::new(CreateDisputeRequest {
        dispute: Some(Dispute {
            account: "accounts/bench".into(),
            invoice_number: "INV-DOC".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    create.metadata_mut().insert(bearer.0, bearer.1.parse()?);
    let holder = c.create_dispute(create).await?.into_inner();
    let mut content = b"%PDF-1.7\n".to_vec();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while content.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        content.extend_from_slice(&x.to_le_bytes());
    }
    content.truncate(size);
    let source = dir.join("source.bin");
    std::fs::write(&source, &content)?;
    let (up, down) = document_round_trip(&gateway_url, &bearer, &holder.name, &content).await?;
    let t = Instant::now();
    std::fs::copy(&source, dir.join("copy.bin"))?;
    let copy = t.elapsed();
    let mib_s = |d: Duration| document_mib as f64 / d.as_secs_f64();
    println!(
        "\nA {document_mib} MiB document through the gateway (1 MiB chunks, SHA-256 and sniffing on the way in)"
    );
    println!("  upload    {:>10.3?}  {:>8.1} MiB/s", up, mib_s(up));
    println!("  download  {:>10.3?}  {:>8.1} MiB/s", down, mib_s(down));
    println!("  file copy {:>10.3?}  {:>8.1} MiB/s", copy, mib_s(copy));
    println!(
        "  upload ÷ copy: {:.1}x the time; download ÷ copy: {:.1}x",
        up.as_secs_f64() / copy.as_secs_f64(),
        down.as_secs_f64() / copy.as_secs_f64()
    );

    gateway.shutdown().await?;
    direct.shutdown().await?;
    drop(suite);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
