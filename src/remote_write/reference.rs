//! The reference encodings built from the prost-generated types ([`time_series`],
//! [`encode_batches`] for 1.0; [`encode_batches_v2`] for 2.0): the hand-written encoders are
//! tested against them byte for byte, and tests and benches use them to craft bodies. Compiled
//! only for tests and with the `test-support` feature: the agent never sends what a reference
//! builds, and the release binary does not contain it. Not here: the request they produce and
//! the encoder interface (`request`), reading bodies back (`wire`).

use bytes::Bytes;
use prost::Message;

use super::proto::v1::{Label, Sample, TimeSeries, WriteRequest};
use super::proto::v2;
use super::request::Request;
use super::{Protocol, METRIC_NAME_LABEL};
use crate::series::CommonLabels;

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

/// Reference: splits `series` into requests of at most `max_samples` samples each (at least one) and
/// encodes them. Series keep their order, so each series' samples stay in time order.
pub fn encode_batches(
    series: Vec<TimeSeries>,
    max_samples: usize,
) -> Result<Vec<Request>, snap::Error> {
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
    ) -> Result<Request, snap::Error> {
        let request = WriteRequest { timeseries };
        let times = request
            .timeseries
            .iter()
            .flat_map(|ts| &ts.samples)
            .map(|s| s.timestamp);
        self.compress(&request, Protocol::V1, samples, times)
    }

    fn compress(
        &mut self,
        request: &impl Message,
        protocol: Protocol,
        samples: usize,
        times: impl Iterator<Item = i64>,
    ) -> Result<Request, snap::Error> {
        let (oldest_ms, newest_ms) =
            times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        self.buf.clear();
        self.buf.reserve(request.encoded_len());
        // Cannot fail: the buffer was just given the room the message needs.
        let _ = request.encode(&mut self.buf);
        let compressed = self.snappy.compress_vec(&self.buf)?;
        Ok(Request {
            protocol,
            body: Bytes::from(compressed),
            samples: u32::try_from(samples).unwrap_or(u32::MAX),
            oldest_ms,
            newest_ms,
        })
    }
}

/// Reference: Remote Write 2.0 requests of at most `max_samples` samples each (at least one),
/// from series built by [`time_series`] (labels sorted, empty values left out, one sample)
/// each with its start timestamp (0 = unknown). Per request: series grouped by family, symbols interned in first-use
/// order (`""` first; for each series its label names and values, then its family's help and
/// unit), labels as refs in the same order, metadata from [`crate::metadata`] (empty for a name
/// it does not know).
pub fn encode_batches_v2(
    series: Vec<(TimeSeries, i64)>,
    max_samples: usize,
) -> Result<Vec<Request>, snap::Error> {
    let max_samples = max_samples.max(1);
    let mut encoder = Reference::default();
    let mut requests = Vec::new();
    let mut batch: Vec<(TimeSeries, i64)> = Vec::new();
    let mut in_batch = 0;
    let mut flush = |batch: Vec<(TimeSeries, i64)>, n: usize| -> Result<(), snap::Error> {
        let times: Vec<i64> = batch
            .iter()
            .flat_map(|(ts, _)| &ts.samples)
            .map(|s| s.timestamp)
            .collect();
        let request = v2_request(batch);
        requests.push(encoder.compress(&request, Protocol::V2, n, times.into_iter())?);
        Ok(())
    };
    for (ts, start) in series {
        let n = ts.samples.len();
        if in_batch > 0 && in_batch + n > max_samples {
            flush(std::mem::take(&mut batch), in_batch)?;
            in_batch = 0;
        }
        in_batch += n;
        batch.push((ts, start));
    }
    if in_batch > 0 {
        flush(batch, in_batch)?;
    }
    Ok(requests)
}

/// One 2.0 request from 1.0-shaped series and their start timestamps, grouped by family
/// (in [`crate::metadata`]'s order, names it does not know last; a stable sort).
fn v2_request(mut batch: Vec<(TimeSeries, i64)>) -> v2::Request {
    batch.sort_by_key(|(ts, _)| {
        let name = ts.labels.iter().find(|l| l.name == METRIC_NAME_LABEL);
        name.and_then(|l| crate::metadata::index(&l.value))
            .unwrap_or(usize::MAX)
    });
    let mut symbols = vec![String::new()];
    let mut index: std::collections::HashMap<String, u32> =
        std::collections::HashMap::from([(String::new(), 0)]);
    let mut intern = |s: &str| -> u32 {
        if let Some(&i) = index.get(s) {
            return i;
        }
        let i = symbols.len() as u32;
        symbols.push(s.to_owned());
        index.insert(s.to_owned(), i);
        i
    };
    let timeseries = batch
        .into_iter()
        .map(|(ts, start)| {
            let mut labels_refs = Vec::with_capacity(ts.labels.len() * 2);
            for l in &ts.labels {
                labels_refs.push(intern(&l.name));
                labels_refs.push(intern(&l.value));
            }
            let name = ts
                .labels
                .iter()
                .find(|l| l.name == METRIC_NAME_LABEL)
                .map_or("", |l| l.value.as_str());
            let metadata = match crate::metadata::family(name) {
                Some(f) => v2::Metadata {
                    r#type: super::wire::metric_type(f.kind),
                    help_ref: intern(f.help),
                    unit_ref: intern(f.unit),
                },
                None => v2::Metadata::default(),
            };
            v2::TimeSeries {
                labels_refs,
                samples: ts
                    .samples
                    .iter()
                    .map(|s| v2::Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                        start_timestamp: start,
                    })
                    .collect(),
                metadata: Some(metadata),
                ..Default::default()
            }
        })
        .collect();
    v2::Request {
        symbols,
        timeseries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::wire::decode_v1;

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
            .flat_map(|r| decode_v1(&r.body).unwrap().timeseries)
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
