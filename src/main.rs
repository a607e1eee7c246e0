//! The binary: parse flags, set up logging and signals, run, map the result to an exit code
//! (0 clean, 64 bad flags or configuration, 1 runtime failure).

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use kubelet_push::cli::{Cli, Command, LogFormat};
use kubelet_push::{Config, Outcome, RunError};
use tokio_util::sync::CancellationToken;

/// EX_USAGE from sysexits.h.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Matches first, then the typed flags: the demo's check needs to know where a value came from.
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    #[cfg(feature = "demo")]
    if let Some(("demo", demo)) = matches.subcommand() {
        if let Some(flag) = kubelet_push::cli::not_for_demo(demo) {
            eprintln!(
                "error: {flag}: does not apply to demo, which polls its own simulated kubelet; \
                 to see what a real kubelet gives, run without demo and with --dry-run"
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    if let Err(e) = init_logging(cli.agent.log_format, &cli.agent.log_level) {
        eprintln!("error: --log-level: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    #[cfg(not(feature = "demo"))]
    let _ = &matches;
    let agent = cli.agent;
    let run = match cli.command {
        // The demo validates the flags itself, once its kubelet and receiver have started.
        #[cfg(feature = "demo")]
        Some(Command::Demo(args)) => Run::Demo(args),
        command => {
            let config = match Config::from_args(&agent) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            if matches!(command, Some(Command::CheckConfig)) {
                print!("{}", config.describe());
                return ExitCode::SUCCESS;
            }
            Run::Agent(Box::new(config))
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        kubelet_push::signal::cancel_on_shutdown(shutdown.clone());
        match run {
            Run::Agent(config) => {
                let metrics = Arc::new(kubelet_push::telemetry::Metrics::new());
                let mut stdout = std::io::stdout();
                kubelet_push::run(*config, shutdown, metrics, &mut stdout).await
            }
            #[cfg(feature = "demo")]
            Run::Demo(args) => kubelet_push::demo::run(&agent, args, shutdown).await,
        }
    });
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(RunError::Config(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// What the command line asks for, validated.
enum Run {
    Agent(Box<Config>),
    #[cfg(feature = "demo")]
    Demo(kubelet_push::cli::DemoArgs),
}

fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::{Layer as _, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = kubelet_push::cli::log_filter(level)?;
    // rustls-platform-verifier logs an ERROR of its own for every certificate it rejects,
    // so a receiver with an unknown CA would log one per retry; the sender and the poller
    // already say it once per episode with the flag that fixes it. Its warnings (unreadable
    // system roots) still pass.
    let filter = tracing_subscriber::filter::FilterExt::and(
        filter,
        tracing_subscriber::filter::filter_fn(|meta| {
            !(meta.target().starts_with("rustls_platform_verifier")
                && *meta.level() == tracing::Level::ERROR)
        }),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(fmt.json().flatten_event(true).with_filter(filter))
            .init(),
    }
    Ok(())
}
