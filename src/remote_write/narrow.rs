//! One destination's view of a request encoded for all of them: only the series whose metric
//! name it is sent, each with its extra labels ([`narrow`]). A poll is encoded once per
//! protocol and shared by every destination; a destination with a `metric-allow`,
//! `metric-deny` or `labels` of its own in the config file gets its requests rewritten here,
//! once per request, at the cost of a decode and an encode (the others pay nothing).
//!
//! Not here: which names a destination is sent (the caller's `keep`), the requests
//! themselves (`request`), reading a body (`wire`).

use super::request::Request;
use super::rewrite::{finish_v1, finish_v2, ConvertError};
use super::wire::{decode_v1, decode_v2};
use super::Protocol;

/// `body` (of `protocol`) with only the series whose `__name__` `keep` accepts, each given
/// `labels` (name, value) unless it has a label of that name already (its own wins, as with
/// Prometheus's external labels). Labels stay sorted by name. `None` when no sample is left.
pub fn narrow(
    protocol: Protocol,
    body: &[u8],
    keep: &mut dyn FnMut(&str) -> bool,
    labels: &[(String, String)],
) -> Result<Option<Request>, ConvertError> {
    let request = match protocol {
        Protocol::V1 => {
            let mut request = decode_v1(body)?;
            request.timeseries.retain(|ts| {
                let name = ts.labels.iter().find(|l| l.name == "__name__");
                keep(name.map_or("", |l| l.value.as_str()))
            });
            for ts in &mut request.timeseries {
                for (name, value) in labels {
                    if !ts.labels.iter().any(|l| l.name == *name) {
                        ts.labels.push(super::proto::v1::Label {
                            name: name.clone(),
                            value: value.clone(),
                        });
                    }
                }
                ts.labels.sort_by(|a, b| a.name.cmp(&b.name));
            }
            finish_v1(&request)?
        }
        Protocol::V2 => {
            let mut request = decode_v2(body)?;
            fn symbol(request: &super::proto::v2::Request, r: u32) -> &str {
                request.symbols.get(r as usize).map_or("", String::as_str)
            }
            let mut kept = Vec::with_capacity(request.timeseries.len());
            for ts in std::mem::take(&mut request.timeseries) {
                let name = ts
                    .labels_refs
                    .chunks_exact(2)
                    .find(|p| symbol(&request, p[0]) == "__name__")
                    .map_or("", |p| symbol(&request, p[1]));
                if keep(name) {
                    kept.push(ts);
                }
            }
            let mut refs = Vec::with_capacity(labels.len());
            for (name, value) in labels {
                let mut intern = |text: &str| match request.symbols.iter().position(|s| s == text) {
                    Some(at) => u32::try_from(at).unwrap_or(u32::MAX),
                    None => {
                        request.symbols.push(text.to_owned());
                        u32::try_from(request.symbols.len() - 1).unwrap_or(u32::MAX)
                    }
                };
                refs.push((intern(name), intern(value)));
            }
            for ts in &mut kept {
                let mut pairs: Vec<(u32, u32)> = ts
                    .labels_refs
                    .chunks_exact(2)
                    .map(|p| (p[0], p[1]))
                    .collect();
                for (name, value) in &refs {
                    let own = pairs
                        .iter()
                        .any(|(n, _)| symbol(&request, *n) == symbol(&request, *name));
                    if !own {
                        pairs.push((*name, *value));
                    }
                }
                pairs.sort_by(|a, b| symbol(&request, a.0).cmp(symbol(&request, b.0)));
                ts.labels_refs = pairs.into_iter().flat_map(|(n, v)| [n, v]).collect();
            }
            request.timeseries = kept;
            finish_v2(&request)?
        }
    };
    Ok((request.samples > 0).then_some(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::proto::{v1, v2};
    use prost::Message;

    fn v1_body() -> Vec<u8> {
        let series = |name: &str, v: f64| v1::TimeSeries {
            labels: vec![
                v1::Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                v1::Label {
                    name: "node".into(),
                    value: "n1".into(),
                },
            ],
            samples: vec![v1::Sample {
                value: v,
                timestamp: 5,
            }],
        };
        let request = v1::WriteRequest {
            timeseries: vec![series("keep_me", 1.0), series("drop_me", 2.0)],
        };
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn v1_keeps_named_series_and_adds_labels_sorted() {
        let labels = vec![
            ("aa".to_owned(), "x".to_owned()),
            ("node".to_owned(), "no".to_owned()),
        ];
        let out = narrow(Protocol::V1, &v1_body(), &mut |n| n == "keep_me", &labels)
            .unwrap()
            .unwrap();
        assert_eq!(out.samples, 1);
        let decoded = decode_v1(&out.body).unwrap();
        assert_eq!(decoded.timeseries.len(), 1);
        let names: Vec<(&str, &str)> = decoded.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        // `node` is the series' own: it wins.
        assert_eq!(
            names,
            [("__name__", "keep_me"), ("aa", "x"), ("node", "n1")]
        );
        assert!(narrow(Protocol::V1, &v1_body(), &mut |_| false, &[])
            .unwrap()
            .is_none());
    }

    #[test]
    fn v2_keeps_named_series_and_adds_labels() {
        let v2 = crate::remote_write::rewrite::v1_to_v2(&decode_v1(&v1_body()).unwrap());
        let body = snap::raw::Encoder::new()
            .compress_vec(&v2.encode_to_vec())
            .unwrap();
        let labels = vec![("zone".to_owned(), "b".to_owned())];
        let out = narrow(Protocol::V2, &body, &mut |n| n == "drop_me", &labels)
            .unwrap()
            .unwrap();
        let decoded: v2::Request = decode_v2(&out.body).unwrap();
        assert_eq!(decoded.timeseries.len(), 1);
        let pairs: Vec<(&str, &str)> = decoded.timeseries[0]
            .labels_refs
            .chunks_exact(2)
            .map(|p| {
                (
                    decoded.symbols[p[0] as usize].as_str(),
                    decoded.symbols[p[1] as usize].as_str(),
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [("__name__", "drop_me"), ("node", "n1"), ("zone", "b")]
        );
        assert_eq!(decoded.timeseries[0].samples[0].value, 2.0);
    }
}
