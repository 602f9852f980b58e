//! Live reload: SIGHUP, or a settings file changing on disk, loads the
//! settings again and swaps a new generation of the shared state in
//! (`state::Live`). Requests in flight finish on the generation they
//! started with; connections stay open.
//!
//! A reload is all or nothing. An invalid file (any problem `gateway check`
//! would report), an unusable certificate or a provider that cannot be
//! reached is refused: the running settings stay, the refusal is logged
//! with every problem and counted (`gateway_config_reloads_total{result}`).
//! Keys that only take effect at startup keep their running values, and
//! the log names them.
//!
//! ```text
//! mod.rs    Reloader: load -> keep restart-only keys -> build -> swap; the task
//! diff.rs   changed sections, restart-only keys
//! watch.rs  directory watcher (ConfigMap symlink swaps), content fingerprint
//! ```
//!
//! It sits above the shared state and the features it rebuilds, below
//! `server.rs`, which starts it.

pub mod diff;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web;
use slog::{error, info, warn, Logger};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::auth::Auth;
use crate::redis::pool::RedisPool;
use crate::settings::{self, RateLimitScope, Sources};
use crate::state::{Gateway, Live, Parts};
use crate::telemetry::logging::LevelHandle;
use crate::tls::ServerCertificate;

/// How long the file watcher waits for a burst of events to settle (a
/// ConfigMap swap or an editor's save is several) before reloading once.
const SETTLE: Duration = Duration::from_millis(300);

/// A reload built and checked, not yet in use.
struct Staged {
    /// `None` when the settings equal the running ones.
    gateway: Option<Gateway>,
    /// The listener's certificate as the files hold it now (with TLS).
    certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    changed: Vec<&'static str>,
    kept_policies: usize,
    /// With auth before and after: whether its sessions carried over.
    sessions_kept: Option<bool>,
}

/// What a reload needs besides the settings: where they come from and the
/// process-wide handles it updates.
pub struct Reloader {
    pub sources: Sources,
    pub live: web::Data<Live>,
    pub level: LevelHandle,
    /// The listener's certificate, with TLS.
    pub certificate: Option<Arc<ServerCertificate>>,
    /// For a session store built by a reload (Redis mode).
    pub session_pool: Option<RedisPool>,
    pub log: Logger,
}

impl Reloader {
    /// Loads the settings again and, if they are usable, makes them
    /// current. `trigger` says why, for the log.
    pub async fn reload(&self, trigger: &str) {
        let running = self.live.current();
        let metrics = running.metrics.clone();
        let staged = match self.stage(&running).await {
            Ok(staged) => staged,
            Err(problems) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
                metrics.config_last_reload_successful.set(0);
                error!(self.log, "settings reload refused: running on with the previous settings";
                    "trigger" => trigger, "problems" => problems.len(),
                    "generation" => running.generation);
                for problem in &problems {
                    error!(self.log, "settings reload problem"; "problem" => problem.as_str());
                }
                return;
            }
        };
        let certificate_read = staged.certificate.is_some();
        if let (Some(listener), Some(key)) = (&self.certificate, staged.certificate) {
            listener.replace(key);
        }
        match staged.gateway {
            Some(next) => {
                let generation = next.generation;
                let clients_rebuilt = next.clients_generation != running.clients_generation;
                forget_removed_targets(&running, &next);
                // Logged if the old or the new level allows it: a reload
                // to `warning` still shows that it happened.
                let level = next.settings.logging.level;
                if !level.is_at_least(self.level.get()) {
                    self.level.set(level);
                }
                info!(self.log, "settings reloaded";
                    "trigger" => trigger, "generation" => generation,
                    "changed" => staged.changed.join(", "),
                    "routes" => next.routes.routes().len(), "upstreams" => next.upstreams.len(),
                    "rate_limit_policies_kept" => staged.kept_policies,
                    "sessions_kept" => staged.sessions_kept,
                    "upstream_clients_rebuilt" => clients_rebuilt,
                    "tls_certificate_read" => certificate_read);
                self.level.set(level);
                for upstream in &next.upstreams {
                    crate::proxy::health_check::start(upstream, &self.log);
                }
                self.live.install(next);
                metrics.config_generation.set(generation as i64);
            }
            None => info!(self.log, "settings reloaded: nothing changed";
                "trigger" => trigger, "generation" => running.generation,
                "tls_certificate_read" => certificate_read),
        }
        metrics.config_reloads.with_label_values(&["success"]).inc();
        metrics.config_last_reload_successful.set(1);
        metrics.config_last_reload_success.set(unix_now());
    }

    /// Everything the settings on disk call for, built but not yet in use;
    /// or every reason they cannot be used.
    async fn stage(&self, running: &Gateway) -> Result<Staged, Vec<String>> {
        let mut next = settings::load(&self.sources).map_err(|problems| {
            problems
                .0
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })?;
        let restart = diff::keep_restart_only_keys(&running.settings, &mut next);
        if !restart.is_empty() {
            warn!(self.log, "settings changed that take effect only at startup; \
                             their running values stay until a restart";
                "keys" => restart.join(", "));
        }
        if next.redis.is_none() {
            if let Some(p) = next
                .rate_limits
                .iter()
                .find(|p| p.scope == RateLimitScope::Cluster)
            {
                return Err(vec![format!(
                    "rate_limits.{}: scope cluster needs redis.url, which takes effect only \
                     at startup; restart the gateway with it",
                    p.name
                )]);
            }
        }
        // Read even when the paths are unchanged: rotating a certificate
        // means new contents under the same names.
        let certificate = match (&self.certificate, &next.server.tls) {
            (Some(_), Some(tls)) => Some(
                crate::tls::certified_key(&tls.cert_file, &tls.key_file)
                    .map_err(|e| vec![format!("server.tls: {e}")])?,
            ),
            _ => None,
        };
        let changed = diff::changed_sections(&running.settings, &next);
        if changed.is_empty() {
            return Ok(Staged {
                gateway: None,
                certificate,
                changed,
                kept_policies: 0,
                sessions_kept: None,
            });
        }
        let auth = Auth::build(
            &next,
            self.session_pool.clone(),
            &running.metrics,
            &self.log,
            running.auth.as_ref(),
        )
        .await
        .map_err(|e| vec![format!("auth: {e}")])?;
        let rate_limits = running.rate_limits.reload(&next, &running.metrics);
        let kept_policies = rate_limits.kept_from(&running.rate_limits);
        let sessions_kept = match (&auth, &running.auth) {
            (Some(new), Some(old)) => Some(new.shares_state_with(old).1),
            _ => None,
        };
        let gateway = running.next(
            next,
            Parts {
                metrics: running.metrics.clone(),
                rate_limits,
                auth,
                log: running.log.clone(),
                lifecycle: running.lifecycle.clone(),
            },
        );
        Ok(Staged {
            gateway: Some(gateway),
            certificate,
            changed,
            kept_policies,
            sessions_kept,
        })
    }

    /// Reloads on every SIGHUP and, with `watch`, whenever the settings
    /// files' contents change; until the process ends.
    pub async fn run(
        self,
        mut hangups: tokio::signal::unix::Signal,
        mut file_events: Option<UnboundedReceiver<()>>,
        files: Vec<PathBuf>,
    ) {
        let mut on_disk = watch::fingerprint(&files);
        loop {
            let trigger = tokio::select! {
                _ = hangups.recv() => "SIGHUP",
                Some(()) = next_event(&mut file_events) => {
                    // Let the burst settle, then look at what it left.
                    actix_rt::time::sleep(SETTLE).await;
                    if let Some(events) = file_events.as_mut() {
                        while events.try_recv().is_ok() {}
                    }
                    let now = watch::fingerprint(&files);
                    if now == on_disk {
                        continue;
                    }
                    on_disk = now;
                    "file change"
                }
            };
            if trigger == "SIGHUP" {
                on_disk = watch::fingerprint(&files);
            }
            self.reload(trigger).await;
        }
    }
}

async fn next_event(events: &mut Option<UnboundedReceiver<()>>) -> Option<()> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Drops the health gauges of targets the new generation no longer has,
/// so dashboards do not show them forever.
fn forget_removed_targets(running: &Gateway, next: &Gateway) {
    for u in &running.upstreams {
        for t in &u.targets {
            let kept = next.upstreams.iter().any(|n| {
                n.settings.name == u.settings.name && n.targets.iter().any(|m| m.url == t.url)
            });
            if !kept {
                let labels = [u.settings.name.as_str(), t.url.as_str()];
                let _ = running.metrics.target_healthy.remove_label_values(&labels);
            }
        }
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
