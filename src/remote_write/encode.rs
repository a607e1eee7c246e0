//! The interface every protocol encoder implements ([`Encoder`]: points of the series model in,
//! compressed request bodies out), the request it produces, and the reference encoding built
//! from the prost-generated types ([`time_series`], [`encode_batches`], [`decode`]): the
//! hand-written encoders are tested against it byte for byte, and tests use it to craft and
//! read bodies. The agent never sends what the reference builds.

use bytes::Bytes;
use prost::Message;

use super::proto::v1::{Label, Sample, TimeSeries, WriteRequest};
use super::{Protocol, METRIC_NAME_LABEL};
use crate::series::{CommonLabels, Point, SeriesSet};

/// Turns the points of one poll into request bodies of one protocol.
pub trait Encoder: Send {
    /// Encodes `points` in order into requests of at most `max_samples` samples each (at least
    /// one), appended to `out`. Nothing fails but compression, which only fails on a body
    /// larger than snappy's 4 GiB limit.
    fn encode(
        &mut self,
        series: &SeriesSet,
        points: &[Point],
        max_samples: usize,
        out: &mut Vec<EncodedRequest>,
    ) -> Result<(), snap::Error>;
}

/// Reference: builds one series with one sample: `__name__`, the metric's labels and the common labels,
/// sorted by name; labels with empty values are left out (Prometheus treats an empty value as
/// no label, and receivers reject empty values on the wire).
pub fn time_series<'a>(
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    common: &CommonLabels,
    value: f64,
    timestamp_ms: i64,
) -> TimeSeries {
    let mut out: Vec<Label> = Vec::with_capacity(8);
    out.push(Label {
        name: METRIC_NAME_LABEL.to_owned(),
        value: name.to_owned(),
    });
    for (n, v) in labels {
        if !v.is_empty() {
            out.push(Label {
                name: n.to_owned(),
                value: v.to_owned(),
            });
        }
    }
    for (n, v) in common.as_slice() {
        out.push(Label {
            name: n.clone(),
            value: v.clone(),
        });
    }
    out.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    TimeSeries {
        labels: out,
        samples: vec![Sample {
            value,
            timestamp: timestamp_ms,
        }],
    }
}

/// One compressed request body, ready to POST.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    pub protocol: Protocol,
    pub body: Bytes,
    pub samples: usize,
    /// Oldest and newest sample timestamp in the request, in milliseconds.
    pub oldest_ms: i64,
    pub newest_ms: i64,
}

/// Reference: splits `series` into requests of at most `max_samples` samples each (at least one) and
/// encodes them. Series keep their order, so each series' samples stay in time order.
pub fn encode_batches(
    series: Vec<TimeSeries>,
    max_samples: usize,
) -> Result<Vec<EncodedRequest>, snap::Error> {
    let max_samples = max_samples.max(1);
    let mut requests = Vec::new();
    let mut batch: Vec<TimeSeries> = Vec::new();
    let mut in_batch = 0;
    let mut encoder = Reference::default();
    for ts in series {
        let n = ts.samples.len();
        if in_batch > 0 && in_batch + n > max_samples {
            requests.push(encoder.encode(std::mem::take(&mut batch), in_batch)?);
            in_batch = 0;
        }
        in_batch += n;
        batch.push(ts);
    }
    if in_batch > 0 {
        requests.push(encoder.encode(batch, in_batch)?);
    }
    Ok(requests)
}

/// Reuses the protobuf buffer and the snappy state across the requests of one poll.
struct Reference {
    buf: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for Reference {
    fn default() -> Self {
        Reference {
            buf: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl Reference {
    fn encode(
        &mut self,
        timeseries: Vec<TimeSeries>,
        samples: usize,
    ) -> Result<EncodedRequest, snap::Error> {
        let times = timeseries
            .iter()
            .flat_map(|ts| &ts.samples)
            .map(|s| s.timestamp);
        let (oldest_ms, newest_ms) =
            times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        let request = WriteRequest { timeseries };
        self.buf.clear();
        self.buf.reserve(request.encoded_len());
        // Cannot fail: the buffer was just given the room the message needs.
        let _ = request.encode(&mut self.buf);
        let compressed = self.snappy.compress_vec(&self.buf)?;
        Ok(EncodedRequest {
            protocol: Protocol::V1,
            body: Bytes::from(compressed),
            samples,
            oldest_ms,
            newest_ms,
        })
    }
}

/// Decodes a Remote Write 1.0 body; for tests, trimming by age and the demo receiver.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn labels_are_sorted_bytewise_and_empty_values_dropped() {
        let common = CommonLabels::new(
            "kubelet",
            "node-1",
            &[
                ("Zone".to_owned(), "a".to_owned()),
                ("region".to_owned(), "eu".to_owned()),
            ],
        );
        let ts = time_series(
            "m",
            [("pod", "p"), ("interface", ""), ("namespace", "ns")],
            &common,
            2.5,
            42,
        );
        assert_eq!(
            names(&ts),
            vec![
                ("Zone", "a"),
                ("__name__", "m"),
                ("instance", "node-1"),
                ("job", "kubelet"),
                ("namespace", "ns"),
                ("node", "node-1"),
                ("pod", "p"),
                ("region", "eu"),
            ]
        );
        assert_eq!(
            ts.samples,
            vec![Sample {
                value: 2.5,
                timestamp: 42
            }]
        );
    }

    #[test]
    fn batches_respect_max_samples_and_round_trip() {
        let common = CommonLabels::new("j", "n", &[]);
        let series: Vec<_> = (0..5)
            .map(|i| {
                time_series(
                    "m",
                    [("pod", &*format!("p{i}"))],
                    &common,
                    f64::from(i),
                    1000 + i64::from(i),
                )
            })
            .collect();
        let reqs = encode_batches(series, 2).unwrap();
        assert_eq!(
            reqs.iter().map(|r| r.samples).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let decoded: Vec<f64> = reqs
            .iter()
            .flat_map(|r| decode(&r.body).unwrap().timeseries)
            .map(|ts| ts.samples[0].value)
            .collect();
        assert_eq!(decoded, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        // Block format: the frame format would start with the stream identifier chunk.
        assert_ne!(reqs[0].body[0], 0xff);
    }

    #[test]
    fn no_series_no_request() {
        assert!(encode_batches(Vec::new(), 10).unwrap().is_empty());
    }
}
