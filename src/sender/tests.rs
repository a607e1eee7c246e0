use super::*;
use std::collections::BTreeSet;

/// `--max-sample-age` on a 2.0 batch straddling the limit: the old samples are cut, the
/// body stays 2.0 (metadata kept), the cut is counted.
#[test]
fn trim_to_age_cuts_a_v2_batch_and_keeps_it_v2() {
    use crate::remote_write::proto::v2;
    use prost::Message;
    let now = now_ms();
    let (old, fresh) = (now - 3_600_000, now - 1_000);
    let sample = |timestamp| v2::Sample {
        value: 1.0,
        timestamp,
        start_timestamp: old - 1,
    };
    let request = v2::Request {
        symbols: ["", "__name__", "a", "b", "help"]
            .map(String::from)
            .to_vec(),
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2],
                samples: vec![sample(old), sample(fresh)],
                metadata: Some(v2::Metadata {
                    r#type: 1,
                    help_ref: 4,
                    unit_ref: 0,
                }),
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 3],
                samples: vec![sample(old)],
                ..Default::default()
            },
        ],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .unwrap();
    let batch = Request {
        protocol: Protocol::V2,
        body: body.into(),
        samples: 3,
        oldest_ms: old,
        newest_ms: fresh,
    };
    let (kept, cut) = trim_to_age(batch, Some(Duration::from_secs(600)));
    let kept = kept.unwrap();
    assert_eq!(kept.protocol, Protocol::V2);
    assert_eq!(
        (kept.samples, kept.oldest_ms, kept.newest_ms),
        (1, fresh, fresh)
    );
    assert_eq!(cut, 2);
    let got = crate::remote_write::wire::decode_v2(&kept.body).unwrap();
    assert_eq!(got.timeseries.len(), 1);
    assert_eq!(got.timeseries[0].labels_refs, vec![1, 2]);
    assert_eq!(got.timeseries[0].samples, vec![sample(fresh)]);
    assert_eq!(got.timeseries[0].metadata, request.timeseries[0].metadata);
}

#[test]
fn backoff_grows_to_its_ceiling_with_full_jitter() {
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 42);
    let ceilings: Vec<u64> = (0..8)
        .map(|_| {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(d <= c, "{d:?} above ceiling {c:?}");
            c.as_secs()
        })
        .collect();
    assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    b.reset();
    assert_eq!(b.ceiling(), Duration::from_secs(1));
}

/// The first delay at the cap is the phase of every later attempt: across batches and
/// agents (seeds) it spreads over the whole range.
#[test]
fn jitter_spreads_over_the_whole_range() {
    let delays: Vec<Duration> = (0..2000)
        .map(|seed| Backoff::new(Duration::from_secs(8), Duration::from_secs(8), seed).next_delay())
        .collect();
    let low = delays
        .iter()
        .filter(|d| **d < Duration::from_secs(2))
        .count();
    let high = delays
        .iter()
        .filter(|d| **d > Duration::from_secs(6))
        .count();
    // Uniform on [0, 8 s]: about a quarter in each end.
    assert!((350..650).contains(&low), "{low}");
    assert!((350..650).contains(&high), "{high}");
    assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
}

/// Below the cap each delay is drawn anew: a long first ceiling spreads within one
/// batch's attempts as well.
#[test]
fn delays_below_the_cap_spread_within_one_batch() {
    let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(8 << 20), 7);
    let delays: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
    for (i, d) in delays.iter().enumerate() {
        assert!(*d <= Duration::from_secs(8 << i), "{i}: {d:?}");
    }
    let distinct: BTreeSet<Duration> = delays.iter().copied().collect();
    assert_eq!(distinct.len(), delays.len(), "{delays:?}");
}

/// At the cap, one attempt per `max`: after the first (jittered) delay at it, every
/// delay is `max` exactly, so a receiver that stays down is tried once per `max` and one
/// that returns is noticed within `max`.
#[test]
fn at_the_cap_one_attempt_per_max() {
    for seed in 0..100 {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), seed);
        let ceilings: Vec<Duration> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                assert!(b.next_delay() <= c);
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [1, 2, 4, 5, 5, 5].map(Duration::from_secs),
            "seed {seed}"
        );
        // The sixth delay (the ceiling reached 5 s at the fourth) and every later one.
        for _ in 0..50 {
            assert_eq!(b.next_delay(), Duration::from_secs(5), "seed {seed}");
        }
    }
    // The first delay at the cap is still drawn.
    let firsts: BTreeSet<Duration> = (0..50)
        .map(|seed| {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), seed);
            (0..3).for_each(|_| {
                b.next_delay();
            });
            b.next_delay()
        })
        .collect();
    assert!(firsts.len() > 40, "{firsts:?}");
    assert!(firsts.iter().all(|d| *d <= Duration::from_secs(5)));
}

/// Two batches (or agents) that failed together draw different delays up to the cap, and
/// so attempt at different times from then on too: their attempts never coincide.
#[test]
fn different_seeds_decorrelate() {
    let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 1);
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 2);
    // Ceilings 1, 2, 4, … 32 s, then the first at 60 s: seven drawn delays.
    let drawn: Vec<(Duration, Duration)> =
        (0..7).map(|_| (a.next_delay(), b.next_delay())).collect();
    let same = drawn.iter().filter(|(x, y)| x == y).count();
    assert_eq!(same, 0, "{drawn:?}");
    let (mut at_a, mut at_b): (Duration, Duration) = (
        drawn.iter().map(|d| d.0).sum(),
        drawn.iter().map(|d| d.1).sum(),
    );
    for _ in 0..20 {
        assert_ne!(at_a, at_b);
        at_a += a.next_delay();
        at_b += b.next_delay();
    }
}

#[test]
fn retry_after_is_clamped() {
    let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 1);
    assert_eq!(b.clamp(Duration::from_secs(2)), Duration::from_secs(2));
    assert_eq!(b.clamp(Duration::ZERO), Duration::from_millis(500));
    // Honoured past --max-backoff: the receiver said how long it needs.
    assert_eq!(b.clamp(Duration::from_secs(60)), Duration::from_secs(60));
    assert_eq!(b.clamp(Duration::from_secs(3600)), MAX_RETRY_AFTER);
    let patient = Backoff::new(Duration::from_secs(1), Duration::from_secs(900), 1);
    assert_eq!(
        patient.clamp(Duration::from_secs(3600)),
        Duration::from_secs(900)
    );
}

#[test]
fn huge_attempt_counts_do_not_overflow() {
    let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), 3);
    for _ in 0..10_000 {
        assert!(b.next_delay() <= Duration::from_secs(60));
    }
}

#[test]
fn an_outage_is_said_once_per_reason() {
    let network = |what: &str| SendError::Retryable {
        reason: what.to_owned(),
        status: None,
        retry_after: None,
        unanswered: false,
    };
    let status = |code: u16| SendError::Retryable {
        reason: format!("receiver answered {code}"),
        status: Some(reqwest::StatusCode::from_u16(code).unwrap()),
        retry_after: None,
        unanswered: false,
    };
    let mut f = Failing::default();
    assert_eq!(f.fail(&network("peer closed connection")), Said::First);
    assert_eq!(f.fail(&network("peer closed connection")), Said::Again);
    assert_eq!(
        f.fail(&network("certificate signed by an unknown authority")),
        Said::NewCause
    );
    // Alternating between reasons already said stays quiet.
    for _ in 0..10 {
        assert_eq!(f.fail(&network("peer closed connection")), Said::Again);
        assert_eq!(
            f.fail(&network("certificate signed by an unknown authority")),
            Said::Again
        );
    }
    assert_eq!(f.fail(&status(503)), Said::NewCause);
    assert_eq!(
        f.fail(&status(503)),
        Said::Again,
        "503 with any body is one reason"
    );
    assert_eq!(f.fail(&status(502)), Said::NewCause);
    // At most four reasons per outage.
    assert_eq!(f.fail(&status(504)), Said::Again);
    assert_eq!(f.recover().map(|(n, _)| n), Some(27));
    assert_eq!(f.fail(&status(504)), Said::First, "a new outage");
}
