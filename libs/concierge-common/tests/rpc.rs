//! What a call leaves in the logs, served in-process as `concierge dev`
//! serves its services: the line of an INTERNAL error and the access line
//! both carry the request id of the call.

use std::sync::{Arc, Mutex};

use concierge_common::Error;
use concierge_common::channel::local;
use tower::ServiceExt;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_internal_error_and_the_access_line_carry_the_request_id() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_writer(logs.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let backend = local(tower::service_fn(
        |_: http::Request<tonic::body::Body>| async {
            let status: tonic::Status =
                Error::Internal(anyhow::anyhow!("the disk is on fire")).into();
            Ok::<_, std::convert::Infallible>(status.into_http::<tonic::body::Body>())
        },
    ));
    let request = http::Request::builder()
        .uri("/concierge.customers.v1.CustomersService/GetAccount")
        .header("x-request-id", "req-42")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = backend.oneshot(request).await.unwrap();
    // The call ends with its body.
    drop(response);

    let lines = logs.lines();
    let internal = lines
        .iter()
        .find(|l| l["message"] == "internal error")
        .expect("the INTERNAL error is logged");
    assert_eq!(internal["level"], "ERROR");
    assert_eq!(internal["span"]["request_id"], "req-42", "{internal}");
    assert_eq!(
        internal["span"]["otel.name"],
        "concierge.customers.v1.CustomersService/GetAccount"
    );
    let access: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "rpc finished")
        .collect();
    assert_eq!(access.len(), 1, "one access line per call: {lines:?}");
    let access = access[0];
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["service"], "concierge.customers.v1.CustomersService");
    assert_eq!(access["method"], "GetAccount");
    assert_eq!(access["code"], "INTERNAL");
    assert_eq!(access["request_id"], "req-42");
    assert!(access["latency_ms"].as_f64().is_some(), "{access}");
}
