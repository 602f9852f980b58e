//! Bodies are streamed, never buffered: a 1 GiB upload and a 1 GiB download
//! pass through the gateway while its peak resident memory stays flat.

mod common;

use bytes::Bytes;
use common::*;

const GIB: u64 = 1 << 30;
/// Allowed growth of peak RSS while 1 GiB passes each way: a few socket
/// buffers and awc chunks per worker, far below the body size.
const MAX_GROWTH_KIB: u64 = 64 * 1024;

#[actix_rt::test]
async fn one_gib_each_way_with_flat_memory() {
    let up = spawn_upstream("bulk");
    let gw = Gateway::start(&format!(
        r#"
server: {{max_body_bytes: 2147483648}}
upstreams: {{bulk: {{targets: ["{}"], request_timeout_ms: 600000}}}}
routes: [{{name: bulk, path_prefix: /, upstream: bulk}}]
logging: {{access_log: false}}
"#,
        up.url()
    ))
    .await;
    let c = client();
    // Warm up so the baseline includes pools, workers and metric series.
    let mut res = c.get(gw.url("/bytes/1048576")).send().await.unwrap();
    assert_eq!(res.body().limit(2 << 20).await.unwrap().len(), 1 << 20);
    let baseline = gw.peak_rss_kib();
    assert!(baseline > 0, "reads /proc");

    // Download: count bytes as they arrive.
    let mut res = c
        .get(gw.url(&format!("/bytes/{GIB}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hdr(&res, "content-length"), GIB.to_string());
    let mut received = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = res.next().await {
        received += chunk.expect("download chunk").len() as u64;
    }
    assert_eq!(received, GIB);

    // Upload: a generated 1 GiB stream of unknown length (chunked).
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let chunks = GIB / chunk.len() as u64;
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let mut res = c.post(gw.url("/upload")).send_stream(body).await.unwrap();
    assert_eq!(res.status(), 200);
    let echo = json_body(&mut res).await;
    assert_eq!(echo["body_len"], GIB);

    let peak = gw.peak_rss_kib();
    eprintln!("gateway peak RSS: baseline {baseline} KiB, after 2 GiB streamed {peak} KiB");
    assert!(
        peak - baseline < MAX_GROWTH_KIB,
        "peak RSS grew by {} KiB while streaming",
        peak - baseline
    );
}
