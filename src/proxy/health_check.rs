//! Active health checks: with `upstreams.<name>.health_check`, every
//! target is sent `GET <path>` each `interval_ms`; `unhealthy_threshold`
//! failures in a row (no answer within `timeout_ms`, or a status not
//! expected) take it out of rotation, `healthy_threshold` passes bring it
//! back. Passive health (`max_fails`) works alongside: a target takes
//! traffic only while both let it.
//!
//! One task per upstream on the main thread, started at startup and for
//! the upstreams a reload creates; it holds the upstream weakly and ends
//! when no settings generation uses it any more.

use std::sync::{Arc, Weak};

use slog::{info, warn, Logger};

use super::balancer::{HealthChange, Upstream};
use super::clients::client_for;

/// Most of a health-check answer that is read (and thrown away) so the
/// connection can be reused.
const BODY_LIMIT: usize = 64 * 1024;

/// Starts checking `upstream`'s targets, unless it has no `health_check`
/// or is checked already (an upstream a reload kept).
pub fn start(upstream: &Arc<Upstream>, log: &Logger) {
    if upstream.settings.health_check.is_none() || !upstream.claim_health_checks() {
        return;
    }
    let log = log.new(slog::o!("upstream" => upstream.settings.name.clone()));
    actix_rt::spawn(check_until_dropped(Arc::downgrade(upstream), log));
}

async fn check_until_dropped(upstream: Weak<Upstream>, log: Logger) {
    let Some(first) = upstream.upgrade() else {
        return;
    };
    let client = client_for(&first.settings, false);
    let Some(hc) = first.settings.health_check.clone() else {
        return;
    };
    drop(first);
    loop {
        let Some(up) = upstream.upgrade() else {
            return;
        };
        let checks = up.targets.iter().map(|t| {
            let request = client
                .get(format!("{}{}", t.url, hc.path))
                .insert_header(("user-agent", "gateway-health-check"))
                .timeout(hc.timeout);
            async move {
                match request.send().await {
                    Ok(mut res) => {
                        let _ = res.body().limit(BODY_LIMIT).await;
                        Ok(res.status().as_u16())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        });
        let results = futures_util::future::join_all(checks).await;
        for (i, result) in results.into_iter().enumerate() {
            let passed = matches!(result, Ok(status) if hc.passes(status));
            let target = up.targets[i].url.as_str();
            match up.record_check(i, passed) {
                HealthChange::MarkedDown => {
                    warn!(log, "upstream target failing health checks: out of rotation";
                    "target" => target, "path" => &hc.path,
                    "result" => match &result { Ok(s) => s.to_string(), Err(e) => e.clone() })
                }
                HealthChange::Recovered => {
                    info!(log, "upstream target passing health checks again";
                    "target" => target)
                }
                HealthChange::None => {}
            }
        }
        drop(up);
        actix_rt::time::sleep(hc.interval).await;
    }
}
