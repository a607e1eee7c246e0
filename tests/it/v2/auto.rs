//! `--remote-write-version auto` (issue 22): 2.0 first, a fall back to 1.0 for a receiver
//! that does not take 2.0, a switch back to 2.0 for one that refuses 1.0, at most once each
//! way.

use super::*;

/// Three polls of three pods: their 2.0 requests, and every series a receiver must end up
/// with.
fn three_polls() -> (Vec<Request>, Vec<TimeSeries>) {
    let polls: Vec<_> = (0..3).map(|p| poll(p, 3)).collect();
    let batches = polls.iter().map(|(b, _)| b.clone()).collect();
    let want = polls.into_iter().flat_map(|(_, e)| e).collect();
    (batches, want)
}

/// `auto` with a receiver that takes 2.0: 2.0 throughout, nothing switched, nothing lost.
#[tokio::test]
async fn auto_stays_on_2_0_with_a_2_0_receiver() {
    let rx = Receiver::start().await.unwrap();
    let (batches, want) = three_polls();
    let negotiated = Negotiated::auto();
    let metrics = start_sender(&rx, memory_queue(&batches), negotiated.clone())
        .drained()
        .await;
    assert_eq!(wire(&rx.requests()), vec![v2_wire(204); 3]);
    assert_eq!(bytes(&rx.accepted_series()), bytes(&want));
    assert_eq!(negotiated.get(), Protocol::V2);
    assert_eq!(protocol_gauge(&metrics), ("0".into(), "1".into()));
    assert_nothing_dropped(&metrics, "");
}

/// `auto` with a receiver that predates 2.0 (415, or a bare 204 storing nothing): falls back
/// to 1.0 as `2` does, nothing lost, one log line.
#[tokio::test]
async fn auto_falls_back_to_1_0_for_an_old_receiver() {
    for (old, status) in [
        (OldReceiver::Unsupported, 415),
        (OldReceiver::IgnoresIt, 204),
    ] {
        let (logs, _guard) = Logs::capture();
        let rx = Receiver::start().await.unwrap();
        rx.answer_v2_like(Some(old));
        let (batches, want) = three_polls();
        let negotiated = Negotiated::auto();
        let metrics = start_sender(&rx, memory_queue(&batches), negotiated.clone())
            .drained()
            .await;
        let mut want_wire = vec![v2_wire(status)];
        want_wire.extend(vec![v1_wire(204); 3]);
        assert_eq!(wire(&rx.requests()), want_wire, "{old:?}");
        assert_eq!(bytes(&rx.accepted_series()), bytes(&want));
        assert_eq!(negotiated.get(), Protocol::V1);
        assert_eq!(metrics.samples_sent.get(), 9);
        assert_nothing_dropped(&metrics, "");
        assert_eq!(logs.text().matches(FALLBACK_LINE).count(), 1);
    }
}

/// A receiver that takes only 2.0 and answers it without the written headers (so `auto`
/// first takes it for one that predates 2.0) and refuses 1.0 with 415: `auto` falls back,
/// meets the 415, switches to 2.0 for good and takes its bare 2xx as written. Every sample is
/// stored (the first 2.0 request, which that receiver did store, twice: at least once),
/// the later polls go as 2.0 once each, and the log says each switch once.
#[tokio::test]
async fn auto_switches_to_2_0_for_a_receiver_that_refuses_1_0() {
    let (logs, _guard) = Logs::capture();
    let rx = Receiver::start().await.unwrap();
    rx.answer_only_v2(Some(false));
    let (batches, want) = three_polls();
    let negotiated = Negotiated::auto();
    let metrics = start_sender(&rx, memory_queue(&batches), negotiated.clone())
        .drained()
        .await;
    assert_eq!(
        wire(&rx.requests()),
        vec![
            v2_wire(204),
            v1_wire(415),
            v2_wire(204),
            v2_wire(204),
            v2_wire(204)
        ]
    );
    let stored: Vec<TimeSeries> = rx.requests()[2..]
        .iter()
        .filter_map(|r| r.write_request.as_ref())
        .flat_map(|w| w.timeseries.clone())
        .collect();
    assert_eq!(bytes(&stored), bytes(&want));
    assert_eq!(negotiated.get(), Protocol::V2);
    assert!(negotiated.switched_to_v2());
    assert_eq!(protocol_gauge(&metrics), ("0".into(), "1".into()));
    assert_eq!(metrics.samples_sent.get(), 9);
    assert_nothing_dropped(&metrics, "");
    let text = logs.text();
    assert_eq!(text.matches(FALLBACK_LINE).count(), 1, "{text}");
    assert_eq!(
        text.matches("does not take Remote Write 1.0 (415)").count(),
        1,
        "{text}"
    );
}

/// A receiver that refuses both protocols (415 to each): `auto` tries each once for the
/// first poll and then drops, counting the samples as rejected, with no back and forth: one
/// request per later poll.
#[tokio::test]
async fn auto_drops_for_a_receiver_refusing_both_without_a_loop() {
    let rx = Receiver::start().await.unwrap();
    rx.answer_only_v2(Some(true));
    rx.answer_v2_like(Some(OldReceiver::Unsupported));
    let (batches, _) = three_polls();
    let negotiated = Negotiated::auto();
    let metrics = start_sender(&rx, memory_queue(&batches), negotiated.clone())
        .drained()
        .await;
    assert_eq!(
        wire(&rx.requests()),
        vec![
            v2_wire(415),
            v1_wire(415),
            v2_wire(415),
            v2_wire(415),
            v2_wire(415)
        ]
    );
    assert_eq!(metrics.samples_sent.get(), 0);
    assert_eq!(metrics.dropped_total(DropReason::Rejected), 9);
}

/// `auto` on 2.0 with 1.0 requests in its buffer (an earlier run fell back, or predates
/// `auto`): they go as 2.0, every sample once.
#[tokio::test]
async fn auto_sends_buffered_1_0_requests_as_2_0() {
    let rx = Receiver::start().await.unwrap();
    let (v2, want) = three_polls();
    let batches: Vec<Request> = v2
        .iter()
        .map(|b| kubelet_push::remote_write::rewrite::to_v1(&b.body).unwrap())
        .collect();
    assert!(batches.iter().all(|b| b.protocol == Protocol::V1));
    let metrics = start_sender(&rx, memory_queue(&batches), Negotiated::auto())
        .drained()
        .await;
    assert_eq!(wire(&rx.requests()), vec![v2_wire(204); 3]);
    assert_eq!(bytes(&rx.accepted_series()), bytes(&want));
    assert_eq!(metrics.samples_sent.get(), 9);
    assert_nothing_dropped(&metrics, "");
}
