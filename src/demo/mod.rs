//! `kubelet-push demo`: placeholder until the simulator lands.
use tokio_util::sync::CancellationToken;

pub async fn run(
    _config: crate::Config,
    _args: crate::cli::DemoArgs,
    _shutdown: CancellationToken,
) -> Result<crate::Outcome, crate::RunError> {
    Ok(crate::Outcome::Ok)
}
