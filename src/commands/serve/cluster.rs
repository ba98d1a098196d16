//! `nudge serve --cluster`: a stateless ingest node. The Segment endpoints
//! take calls exactly as the single-node server does (the same [`Gate`]),
//! then hand them to the cluster: each call is routed to its canonical
//! customer's partition and published to JetStream, and the answer is 200
//! only once JetStream has acknowledged every call of the request.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nudge_host::config::HttpLimits;
use nudge_host::metrics::Metrics;
use serde_json::json;

use super::{Gate, Secret, Taken, accept, error};
use crate::commands::Status;

/// What the ingest node's handlers share.
#[derive(Clone)]
struct Node {
    ingest: nudge_cluster::Ingest,
    keys: Arc<[Secret]>,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
}

/// Serves the Segment API into the cluster until SIGTERM or SIGINT.
pub(super) fn serve(
    listen: &str,
    settings: &nudge_cluster::Settings,
    keys: Vec<Secret>,
    limits: HttpLimits,
) -> Status {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the HTTP runtime: {e}");
            return Status::Failure;
        }
    };
    runtime.block_on(async {
        let ingest = match nudge_cluster::Ingest::connect(settings).await {
            Ok(i) => i,
            Err(e) => {
                eprintln!("error: {e}");
                return Status::Failure;
            }
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return Status::Failure;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on {addr}"),
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return Status::Failure;
            }
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let metrics = Arc::new(Metrics::default());
        let node = Node {
            ingest,
            keys: keys.into(),
            limits,
            metrics: metrics.clone(),
        };
        let router = Router::new()
            .route("/v1/{kind}", post(take_calls))
            .route("/healthz", get(|| async { StatusCode::OK }))
            .route("/readyz", get(ready))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint", None) })
            .method_not_allowed_fallback(|| async {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed here",
                    None,
                )
            })
            .with_state(node);
        accept(listener, router, limits, metrics).await;
        Status::Ok
    })
}

/// `/readyz`: ready while the stream is there.
async fn ready(State(node): State<Node>) -> Response {
    let check = tokio::time::timeout(Duration::from_secs(5), node.ingest.log().check_stream());
    match check.await {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(json!({ "ready": true }))).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NATS did not answer within 5s",
            None,
        ),
    }
}

async fn take_calls(
    State(node): State<Node>,
    UrlPath(kind): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let gate = Gate {
        keys: &node.keys,
        limits: node.limits,
        metrics: &node.metrics,
        receipt: true,
    };
    let Taken { lines, refused, .. } = match gate.take(&kind, &headers, body).await {
        Ok(t) => t,
        Err(response) => return *response,
    };
    if lines.is_empty() && refused.is_empty() {
        return (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response();
    }
    let refused = refused.into_iter().map(|d| (d.input, d.reason)).collect();
    match node.ingest.accept(lines, refused).await {
        Ok(_) => (StatusCode::OK, axum::Json(json!({ "success": true }))).into_response(),
        Err(e) => {
            // Nothing is claimed: Segment's clients retry with the same
            // messageIds, which the log drops if they did get through.
            let mut busy = error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None);
            busy.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            busy
        }
    }
}
