//! `kubelet-push demo`: the real agent pipeline against a simulated Windows kubelet, pushing to
//! `--remote-url` when given, otherwise to a built-in receiver that decodes every request and
//! prints what arrived once per interval. The simulator and receiver are `testkit`'s, which the
//! tests use too; this module owns the demo's settings and its printed summary (`printer`).

mod printer;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{AgentArgs, DemoArgs};
use crate::config::{Config, ConfigError, DemoSetup, RemoteSettings};
use crate::telemetry::{DropReason, Metrics};
use crate::testkit::{receiver, simulator};
use crate::{Outcome, RunError};

/// The demo's poll interval unless `--interval` is given: short enough to see things move.
const DEMO_INTERVAL: Duration = Duration::from_secs(2);
/// Requests the built-in receiver keeps for its printer; older ones are forgotten.
const RECEIVER_RETAIN: usize = 1024;

/// Starts the simulated kubelet and the built-in receiver, validates `agent` for them
/// ([`Config::for_demo`]), and runs the agent until `shutdown` or `--duration`.
pub async fn run(
    agent: &AgentArgs,
    args: DemoArgs,
    shutdown: CancellationToken,
) -> Result<Outcome, RunError> {
    let io_error = |what: &str, e: std::io::Error| ConfigError {
        flag: "demo",
        reason: format!("cannot start the {what} on 127.0.0.1: {e}"),
    };
    let url = |what: &str, url: String| {
        reqwest::Url::parse(&url).map_err(|e| ConfigError {
            flag: "demo",
            reason: format!("{what} URL: {e}"),
        })
    };
    // A node that booted hours ago, so counters and start times look like a real node's.
    let booted = SystemTime::now() - Duration::from_secs(3 * 3600);
    let sim = simulator::SimulatedKubelet::new(args.pods, seed(), booted);
    let kubelet = simulator::KubeletServer::start(sim)
        .await
        .map_err(|e| io_error("simulated kubelet", e))?;
    let receiver = receiver::Receiver::start_retaining(RECEIVER_RETAIN)
        .await
        .map_err(|e| io_error("demo receiver", e))?;
    let receiver_url = url("demo receiver", receiver.url())?;
    let config = Config::for_demo(
        agent,
        DemoSetup {
            kubelet: url("simulated kubelet", kubelet.url())?,
            // The demo's own default, but any --interval given is honoured, 10s included.
            interval: args.interval.unwrap_or(DEMO_INTERVAL),
            receiver: RemoteSettings {
                timeout: Duration::from_secs(5),
                ..RemoteSettings::new(receiver_url.clone())
            },
        },
    )?;
    let printer_stop = CancellationToken::new();
    // The built-in receiver is used (and printed) only when the flags name no destination.
    let built_in = config.remotes.iter().any(|r| r.url == receiver_url);
    let local = built_in.then(|| {
        let printer = printer::spawn_printer(
            &receiver,
            config.poll.interval,
            std::io::stdout(),
            printer_stop.clone(),
        );
        (receiver, printer)
    });
    info!(
        pods = args.pods,
        kubelet = %kubelet.url(),
        receiver = if local.is_some() { "built-in" } else { "--remote-url" },
        "demo: simulated Windows node started; Ctrl-C to stop"
    );
    let stop = shutdown.child_token();
    if let Some(d) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stop.cancel();
        });
    }
    let metrics = Arc::new(Metrics::new());
    let mut stdout = std::io::stdout();
    let outcome = crate::run(config, stop, metrics.clone(), &mut stdout).await;
    if let Some((_receiver, printer)) = local {
        printer_stop.cancel();
        let _ = printer.await;
    }
    let destinations = metrics.destinations();
    let dropped: u64 = destinations
        .iter()
        .flat_map(|d| DropReason::ALL.map(|r| d.dropped_total(r)))
        .sum();
    println!(
        "demo finished: {} samples pushed, {} retries, {} samples dropped",
        destinations
            .iter()
            .map(|d| d.samples_sent.get())
            .sum::<u64>(),
        destinations.iter().map(|d| d.retries.get()).sum::<u64>(),
        dropped,
    );
    outcome
}

/// Different pod names each run, like a real cluster.
fn seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
}
