//! [`Encoders`]: one encoder per protocol, for a source that encodes each poll in whichever
//! protocol its destinations speak now.

use super::request::{Encoder as _, Request};
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
    /// samples each, with `catalog`'s family metadata and, in 2.0, `exemplars` (of some of
    /// the points, in their order; 1.0 is sent without, as Prometheus sends it by default).
    pub fn encode(
        &mut self,
        protocol: Protocol,
        series: &crate::series::SeriesSet,
        points: &[crate::series::Point],
        exemplars: &[crate::series::Exemplar],
        catalog: &dyn crate::metadata::Catalog,
        max_samples: usize,
    ) -> Result<Vec<Request>, snap::Error> {
        let mut out = Vec::new();
        match protocol {
            Protocol::V1 => self
                .v1
                .encode_in(series, points, catalog, max_samples, &mut out)?,
            Protocol::V2 => self.v2.encode_with_exemplars(
                series,
                points,
                exemplars,
                catalog,
                max_samples,
                &mut out,
            )?,
        }
        Ok(out)
    }
}
