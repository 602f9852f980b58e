//! Writes one valid login session into Redis through the gateway's own
//! session store (for `bench/auth.sh`), so that a session route can be
//! exercised without an identity provider.
//!
//! The session is sealed with the key derived from `--secret` and stored
//! under the hash of a fresh random id, exactly as `/oauth2/callback` does;
//! a gateway configured with the same `auth.session.secret` and
//! `redis.url` accepts it. Its access token never expires as far as the
//! gateway knows (`access_expires_at` 0), so no refresh is ever attempted.
//!
//! Usage: `mint_session --redis redis://127.0.0.1:6380/0 --secret S
//! [--subject bench-user] [--ttl-secs 86400]`. Prints the session id (the
//! cookie value) on stdout and nothing else.

use std::process::ExitCode;
use std::time::Duration;

use gateway::settings::RedisSettings;
use gateway::tools::{random_token, unix_now, Identity, RedisPool, Session, SessionStore};

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("mint_session: {problem}");
    eprintln!("usage: mint_session --redis URL --secret SECRET [--subject NAME] [--ttl-secs N]");
    ExitCode::from(2)
}

/// A store over `url`, as the gateway builds it (with a fresh cache).
fn open_store(url: &str, secret: &str) -> Result<SessionStore, String> {
    let redis = RedisSettings {
        urls: vec![url.to_owned()],
        cluster: false,
        pool_size: 4,
        command_timeout: Duration::from_secs(2),
    };
    let pool = RedisPool::new(&redis).map_err(|e| format!("redis pool for {url}: {e}"))?;
    let log = slog::Logger::root(slog::Discard, slog::o!());
    // The cache TTL only matters to a store that also reads; any value works.
    SessionStore::redis(secret, pool, &redis, Duration::from_secs(10), log)
        .map_err(|e| format!("session store for {url}: {e}"))
}

async fn mint(url: &str, secret: &str, subject: String, ttl: u64) -> Result<String, String> {
    let store = open_store(url, secret)?;
    let id = random_token();
    let now = unix_now();
    let identity = Identity::new(
        subject.clone(),
        Some(format!("{subject}@bench.invalid")),
        vec!["bench".to_owned()],
        vec![
            "openid".to_owned(),
            "profile".to_owned(),
            "email".to_owned(),
        ],
    );
    let session = Session::new(
        identity,
        format!("bench-access-token-{}", random_token()),
        None,
        0,
        now,
        now + ttl,
    );
    store
        .save(&id, session.clone())
        .await
        .map_err(|e| format!("saving the session: {e}"))?;
    // Read it back through a store with an empty cache: proves that Redis
    // holds it and that the secret opens it.
    let check = open_store(url, secret)?;
    match check.lookup(&id).await {
        Ok(Some(s)) if s.subject == session.subject && s.expires_at == session.expires_at => Ok(id),
        Ok(_) => Err("the session did not read back from Redis".to_owned()),
        Err(e) => Err(format!("reading the session back: {e}")),
    }
}

fn main() -> ExitCode {
    let Some(url) = arg("--redis") else {
        return usage("--redis URL is required");
    };
    let Some(secret) = arg("--secret") else {
        return usage("--secret is required");
    };
    if secret.len() < 32 {
        // The gateway refuses shorter secrets; a session sealed with one
        // could never be read by it.
        return usage("--secret must be at least 32 bytes, as auth.session.secret");
    }
    let subject = arg("--subject").unwrap_or_else(|| "bench-user".to_owned());
    let ttl = match arg("--ttl-secs").map(|t| t.parse::<u64>()) {
        None => 86_400,
        Some(Ok(t)) if t > 0 => t,
        Some(_) => return usage("--ttl-secs must be a positive integer"),
    };
    let result = actix_rt::System::new().block_on(mint(&url, &secret, subject, ttl));
    match result {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint_session: {e}");
            ExitCode::FAILURE
        }
    }
}
