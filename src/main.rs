//! The `gateway` binary: parse the command line, load and validate settings,
//! start logging, run the server. Nothing starts on a bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: the request path allocates many small, short-lived buffers;
// measured faster than the system allocator under proxy load (see bench/).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gateway::settings::{self, Sources};
use slog::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "API gateway: proxy, logs, auth, rate limits"
)]
struct Cli {
    /// Settings file (YAML, TOML or JSON by extension); repeat to layer.
    /// Without it, settings/default.yaml is read if it exists.
    #[arg(long = "config", short = 'c', global = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Override one key, e.g. --set server.workers=2 (applied last).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Start the gateway (the default).
    Run,
    /// Validate the configuration and exit (non-zero on any problem).
    Check,
    /// Ask a running gateway's admin listener whether it is ready: exit 0
    /// when /health/ready answers 200, else 1 with the reason on stderr (for
    /// container health checks; the image has no curl).
    Health {
        /// Ask /health/live instead of /health/ready.
        #[arg(long)]
        live: bool,
        /// The admin listener's base URL (http://host:port); without it, the
        /// settings' admin.listen (same files, GATEWAY_* variables and --set
        /// as `run`; 0.0.0.0 and :: mean this host's loopback).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Give up after this long in all (connecting and the answer).
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
    },
}

const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources {
        config_files: cli.config,
        overrides: cli.set,
        use_env: true,
    };
    if let Some(Command::Health {
        live,
        url,
        timeout_ms,
    }) = cli.command
    {
        return health(&sources, live, url.as_deref(), timeout_ms);
    }
    let settings = match settings::load(&sources) {
        Ok(s) => s,
        Err(problems) => {
            eprint!("{problems}");
            eprintln!(
                "gateway: configuration invalid: {} problem(s); not starting",
                problems.0.len()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let files = sources.files();
    // What an operator would not notice until every request gets 404.
    let notes = [
        files.is_empty().then(|| {
            let env = std::env::vars().any(|(k, _)| k.starts_with(settings::ENV_PREFIX));
            format!(
                "no settings file was read (no --config given, and {} does not exist): \
                 built-in defaults{}{}",
                settings::DEFAULT_CONFIG_FILE,
                if env { ", GATEWAY_* variables" } else { "" },
                if sources.overrides.is_empty() {
                    ""
                } else {
                    ", --set"
                }
            )
        }),
        settings
            .routes
            .is_empty()
            .then(|| "no routes are defined: the gateway answers 404 to every request".to_owned()),
    ];
    if let Some(Command::Check) = cli.command {
        for note in notes.iter().flatten() {
            println!("note: {note}");
        }
        let read: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        if !read.is_empty() {
            println!("settings read: {}", read.join(", "));
        }
        println!(
            "configuration OK: {} route(s), {} upstream(s), {} rate-limit policy(ies), state store: {}",
            settings.routes.len(),
            settings.upstreams.len(),
            settings.rate_limits.len(),
            if settings.redis.is_some() { "redis" } else { "memory" }
        );
        return ExitCode::SUCCESS;
    }

    let (log, guard, access, level) = gateway::logging::build(&settings.logging);
    for note in notes.iter().flatten() {
        warn!(log, "{}", note);
    }
    info!(log, "configuration loaded";
        "routes" => settings.routes.len(), "upstreams" => settings.upstreams.len(),
        "workers" => settings.server.workers, "state_store" => if settings.redis.is_some() { "redis" } else { "memory" });
    let logging = gateway::Logging {
        log: log.clone(),
        access,
        level,
    };
    let result = actix_rt::System::new().block_on(gateway::run(settings, sources, logging));
    let code = match result {
        Ok(()) => {
            info!(log, "gateway stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(log, "gateway failed"; "error" => %e);
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    };
    drop(log);
    drop(guard);
    code
}

/// `gateway health`: 0 when the admin endpoint answers 200, else 1 (never 2:
/// Docker's HEALTHCHECK reserves it) with one line on stderr.
fn health(sources: &Sources, live: bool, url: Option<&str>, timeout_ms: u64) -> ExitCode {
    use gateway::probe::{self, Endpoint};
    let endpoint = if live {
        Endpoint::Live
    } else {
        Endpoint::Ready
    };
    let url = match url {
        Some(base) => probe::url_for_base(base, endpoint),
        // Only admin.listen is read: a settings file that has become invalid
        // elsewhere since the gateway started does not hide a running one.
        None => settings::admin_listen(sources)
            .map(|addr| probe::url_for_addr(addr, endpoint))
            .map_err(|problems| match problems.0.first() {
                Some(p) if problems.0.len() == 1 => format!("cannot tell admin.listen: {p}"),
                Some(p) => format!(
                    "cannot tell admin.listen: {p} (and {} more problem(s); gateway check shows them)",
                    problems.0.len() - 1
                ),
                None => "cannot tell admin.listen".to_owned(),
            }),
    };
    let url = match url {
        Ok(url) => url,
        Err(reason) => {
            eprintln!("gateway health: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = std::time::Duration::from_millis(timeout_ms.max(1));
    match actix_rt::System::new().block_on(probe::probe(&url, timeout)) {
        Ok(described) => {
            println!("gateway health: {url}: {described}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("gateway health: {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}
