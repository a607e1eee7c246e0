//! [`Encoders`]: one encoder per protocol, for a source that encodes each poll in whichever
//! protocol its destinations speak now.

use super::request::{Encoder, Request};
use super::v1::V1Encoder;
use super::v2::V2Encoder;
use super::Protocol;

/// One encoder per protocol, with their per-series caches: what a source (the kubelet's
/// poller, a scrape target) keeps to encode each poll in whichever protocol its destinations
/// speak now.
#[derive(Default)]
pub struct Encoders {
    v1: V1Encoder,
    v2: V2Encoder,
}

impl Encoders {
    /// The requests of `points` (series of `series`) in `protocol`, at most `max_samples`
    /// samples each, with `catalog`'s family metadata.
    pub fn encode(
        &mut self,
        protocol: Protocol,
        series: &crate::series::SeriesSet,
        points: &[crate::series::Point],
        catalog: &dyn crate::metadata::Catalog,
        max_samples: usize,
    ) -> Result<Vec<Request>, snap::Error> {
        let mut out = Vec::new();
        let encoder: &mut dyn Encoder = match protocol {
            Protocol::V1 => &mut self.v1,
            Protocol::V2 => &mut self.v2,
        };
        encoder.encode_in(series, points, catalog, max_samples, &mut out)?;
        Ok(out)
    }
}
