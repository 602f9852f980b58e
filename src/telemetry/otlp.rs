//! The span pipeline behind `tracing.enabled`, built once at startup: the
//! SDK's tracer provider (parent-based ratio sampler, batch processor on
//! its own thread) and the OTLP/HTTP protobuf exporter.
//!
//! The exporter sends through awc, the gateway's one HTTP client stack.
//! awc clients are `!Send` and live on an actix runtime, while the batch
//! processor calls the exporter from its own thread: [`AwcBridge`] runs one
//! client on a small thread of its own and hands it requests over a
//! channel. Exported and failed spans are counted
//! (`gateway_trace_spans_total`); the request spans are in `tracing.rs`.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prometheus::IntCounter;
use slog::{info, warn, Logger};
use tokio::sync::{mpsc, oneshot};

use super::metrics::Metrics;
use super::tracing::RequestTracer;
use crate::settings::TracingSettings;

/// Collector answers are small; a larger one is refused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

type Job = (
    Request<Bytes>,
    oneshot::Sender<Result<Response<Bytes>, HttpError>>,
);

/// An [`HttpClient`] for the exporter whose requests an awc client sends
/// on the bridge's own thread.
#[derive(Debug, Clone)]
struct AwcBridge {
    jobs: mpsc::Sender<Job>,
}

impl AwcBridge {
    fn start(timeout: Duration) -> std::io::Result<Self> {
        let (jobs, mut incoming) = mpsc::channel::<Job>(4);
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let client = client(timeout);
                    // Ends when the exporter (every sender) is gone.
                    while let Some((request, reply)) = incoming.recv().await {
                        let _ = reply.send(send(&client, request).await);
                    }
                });
            })?;
        Ok(Self { jobs })
    }
}

fn client(timeout: Duration) -> awc::Client {
    let mut connector = awc::Connector::new().timeout(timeout);
    if let Ok(tls) = crate::tls::client_config(None) {
        connector = connector.rustls_0_23(tls);
    }
    awc::Client::builder()
        .connector(connector)
        .timeout(timeout)
        .disable_redirects()
        .finish()
}

async fn send(client: &awc::Client, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (head, body) = request.into_parts();
    let method = awc::http::Method::from_bytes(head.method.as_str().as_bytes())?;
    let mut up = client.request(method, head.uri.to_string());
    for (name, value) in &head.headers {
        up = up.append_header((name.as_str(), value.as_bytes()));
    }
    let mut answer = up.send_body(body).await.map_err(|e| e.to_string())?;
    let body = answer
        .body()
        .limit(MAX_ANSWER_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Response::builder()
        .status(answer.status().as_u16())
        .body(body)?)
}

#[async_trait::async_trait]
impl HttpClient for AwcBridge {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((request, reply))
            .await
            .map_err(|_| "the OTLP export thread has stopped")?;
        answer
            .await
            .map_err(|_| "the OTLP export thread dropped the request")?
    }
}

/// The OTLP exporter, counting what it delivered and what it could not.
#[derive(Debug)]
struct CountedExporter {
    inner: opentelemetry_otlp::SpanExporter,
    exported: IntCounter,
    failed: IntCounter,
}

impl SpanExporter for CountedExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match result {
            Ok(()) => self.exported.inc_by(spans),
            Err(_) => self.failed.inc_by(spans),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The running span pipeline; [`SpanPipeline::shut_down`] sends what is
/// still queued.
pub struct SpanPipeline {
    provider: SdkTracerProvider,
}

impl SpanPipeline {
    /// Builds the exporter thread and the provider; returns the tracer the
    /// workers clone.
    pub fn start(
        settings: &TracingSettings,
        metrics: &Metrics,
        log: &Logger,
    ) -> Result<(Self, RequestTracer), String> {
        let bridge = AwcBridge::start(settings.export_timeout)
            .map_err(|e| format!("tracing: cannot start the export thread: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(bridge)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.otlp_endpoint.as_str())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|e| format!("tracing.otlp_endpoint: {e}"))?;
        let exporter = CountedExporter {
            inner: exporter,
            exported: metrics.trace_spans.with_label_values(&["exported"]),
            failed: metrics.trace_spans.with_label_values(&["failed"]),
        };
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("gateway");
        info!(log, "tracing: request spans exported over OTLP/HTTP";
            "endpoint" => settings.otlp_endpoint.as_str(),
            "service_name" => &settings.service_name,
            "sample_ratio" => settings.sample_ratio);
        let ended = metrics.trace_spans.with_label_values(&["ended"]);
        Ok((Self { provider }, RequestTracer::new(tracer, ended)))
    }

    /// Exports what is still queued (bounded by the export timeout) and
    /// stops the batch thread. Blocks: call it once the listeners are closed.
    pub fn shut_down(self, log: &Logger) {
        if let Err(e) = self.provider.shutdown() {
            warn!(log, "tracing: spans still queued at shutdown were not all exported";
                "error" => %e);
        }
    }
}
