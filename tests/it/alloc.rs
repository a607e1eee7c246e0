//! The series model's promise: on a repeated poll, a known series costs no heap allocation.
//! Counted with a wrapping global allocator, per thread, so tests running beside this one do
//! not disturb the count. It also keeps the peak of live bytes per thread, for the property
//! tests' bound on what a hostile summary can make the agent allocate ([`peak_bytes`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

use kubelet_push::pipeline::Poller;
use kubelet_push::testkit::simulator::SimulatedKubelet;

use crate::support::config;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// The largest single allocation (or reallocation) this thread asked for.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread (memory may be freed on another).
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn live_add(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        live_add(layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live_add(-(layout.size() as i64));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        live_add(new_size as i64 - layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The largest single allocation `f` made on this thread (0 when none), and its result: how the
/// property tests show that no length read from hostile input is allocated as claimed.
pub(crate) fn largest_allocation<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = LARGEST.with(|l| l.replace(0));
    let out = f();
    let largest = LARGEST.with(|l| l.replace(before.max(l.get())));
    (largest, out)
}

/// The most bytes `f` had allocated at once on this thread (beyond what was live before).
pub fn peak_bytes<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (usize::try_from(peak - start).unwrap_or(0), out)
}

fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

/// Allocations of a repeated poll beyond those of parsing the summary: a fixed handful (the
/// poll's point list, the per-poll series' requests), whether the node runs 10 pods or 110,
/// in either protocol.
#[test]
fn a_repeated_poll_allocates_nothing_per_series() {
    let mut extra = Vec::new();
    use kubelet_push::remote_write::Protocol;
    for (version, pods) in [("1", 10), ("1", 110), ("2", 10), ("2", 110)] {
        let protocol = if version == "1" {
            Protocol::V1
        } else {
            Protocol::V2
        };
        // A fixed time just before the polls' (1_800_000_000_000): a summary stamped with the
        // real clock would be from the future for them once the real clock passes it.
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 60);
        let bytes = SimulatedKubelet::new(pods, 3, at - Duration::from_secs(3600))
            .summary_json(at)
            .into_bytes();
        let mut poller = Poller::new(
            &config(&["--dry-run", "--kubelet-url", "file://unused.json"]).poll,
            std::sync::Arc::new(kubelet_push::telemetry::Metrics::new()),
        )
        .unwrap();
        let first = poller.ingest(Ok(&bytes), 1_800_000_000_000, Instant::now());
        assert!(first.error.is_none());
        assert!(first.points.len() > pods * 10, "{}", first.points.len());
        poller.encode_as(protocol, &first, 2000).unwrap();
        let (parse, summary) =
            allocations(|| kubelet_push::kubelet::summary::parse(&bytes).map(|_| ()));
        summary.unwrap();
        let (poll, requests) = allocations(|| {
            let again = poller.ingest(Ok(&bytes), 1_800_000_010_000, Instant::now());
            assert_eq!(again.points.len(), 3, "only up and scrape_* are new");
            poller.encode_as(protocol, &again, 2000).unwrap()
        });
        assert_eq!(requests.len(), 1);
        assert!(poll >= parse, "{poll} < {parse}");
        assert_eq!(
            requests[0].protocol.version(),
            if version == "1" { "0.1.0" } else { "2.0.0" }
        );
        extra.push((version, pods, poll - parse));
    }
    for &(version, pods, n) in &extra {
        assert!(
            n <= 16,
            "Remote Write {version}, {pods} pods: {n} allocations beyond parsing ({extra:?})"
        );
    }
}

/// Catching up on a 1.0 destination merges about 2 MiB of buffered requests into one; the
/// merge holds the merged body and nothing more. Decompressing the parts to join them would
/// hold several times that: this data compresses about 9×, so 18 MB or more for 2 MiB.
#[test]
fn a_v1_catch_up_merge_holds_only_the_merged_body() {
    use kubelet_push::remote_write::{rewrite, Protocol};
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 600);
    let mut kubelet = SimulatedKubelet::new(110, 7, at - Duration::from_secs(3600));
    let mut poller = Poller::new(
        &config(&["--dry-run", "--kubelet-url", "file://unused.json"]).poll,
        std::sync::Arc::new(kubelet_push::telemetry::Metrics::new()),
    )
    .unwrap();
    // Polls 10 s apart, every one new, as buffered during an outage, up to 2 MiB of bodies.
    let mut parts = Vec::new();
    let mut compressed = 0;
    let mut polls = 0u64;
    while compressed < 2 << 20 {
        let now = at + Duration::from_secs(10 * polls);
        let bytes = kubelet.summary_json(now).into_bytes();
        let ms = 1_800_000_000_000 - 600_000 + 10_000 * polls as i64;
        let poll = poller.ingest(Ok(&bytes), ms, Instant::now());
        assert!(poll.error.is_none());
        for request in poller.encode_as(Protocol::V1, &poll, 2000).unwrap() {
            compressed += request.body.len();
            parts.push(request);
        }
        polls += 1;
    }
    let decompressed: usize = parts
        .iter()
        .map(|p| snap::raw::decompress_len(&p.body).unwrap())
        .sum();
    let (peak, merged) = peak_bytes(|| rewrite::merge(Protocol::V1, &parts).unwrap());
    // The parts' bytes, less their length headers but for one.
    assert!(merged.body.len() < compressed && merged.body.len() > compressed - 5 * parts.len());
    assert!(
        peak <= merged.body.len() + (64 << 10),
        "{polls} polls, {} requests: {compressed} B compressed, {decompressed} B decompressed; \
         the merge held {peak} B at its peak for a {} B body",
        parts.len(),
        merged.body.len()
    );
    let want: Vec<u8> = parts
        .iter()
        .flat_map(|p| snap::raw::Decoder::new().decompress_vec(&p.body).unwrap())
        .collect();
    assert!(
        snap::raw::Decoder::new()
            .decompress_vec(&merged.body)
            .unwrap()
            == want
    );
    assert_eq!(merged.samples, parts.iter().map(|p| p.samples).sum::<u32>());
}

/// Catching up on a 2.0 destination merges the same 2 MiB on the wire: each part's symbols
/// are interned into one table and its series' refs mapped, one part decompressed at a time.
/// The merge holds the parts' rewritten series compressed, the merged body, one part
/// decompressed and the symbols; decoding every part into the prost types, as it used to,
/// held several times the decompressed size.
#[test]
fn a_v2_catch_up_merge_holds_twice_the_merged_body_and_one_part() {
    use kubelet_push::remote_write::{rewrite, wire, Protocol};
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 - 600);
    let mut kubelet = SimulatedKubelet::new(110, 7, at - Duration::from_secs(3600));
    let mut poller = Poller::new(
        &config(&["--dry-run", "--kubelet-url", "file://unused.json"]).poll,
        std::sync::Arc::new(kubelet_push::telemetry::Metrics::new()),
    )
    .unwrap();
    let mut parts = Vec::new();
    let mut compressed = 0;
    let mut polls = 0u64;
    while compressed < 2 << 20 {
        let now = at + Duration::from_secs(10 * polls);
        let bytes = kubelet.summary_json(now).into_bytes();
        let ms = 1_800_000_000_000 - 600_000 + 10_000 * polls as i64;
        let poll = poller.ingest(Ok(&bytes), ms, Instant::now());
        assert!(poll.error.is_none());
        for request in poller.encode_as(Protocol::V2, &poll, 2000).unwrap() {
            compressed += request.body.len();
            parts.push(request);
        }
        polls += 1;
    }
    let decompressed: usize = parts
        .iter()
        .map(|p| snap::raw::decompress_len(&p.body).unwrap())
        .sum();
    let largest = parts
        .iter()
        .map(|p| snap::raw::decompress_len(&p.body).unwrap())
        .max()
        .unwrap();
    let (peak, merged) = peak_bytes(|| rewrite::merge(Protocol::V2, &parts).unwrap());
    assert!(
        peak <= 2 * merged.body.len() + largest + (256 << 10),
        "{polls} polls, {} requests: {compressed} B compressed, {decompressed} B decompressed, \
         the largest {largest} B; the merge held {peak} B at its peak for a {} B body",
        parts.len(),
        merged.body.len()
    );
    // Every part's series, in order, with its labels and samples.
    let series = |r: &kubelet_push::remote_write::proto::v2::Request| -> Vec<String> {
        r.timeseries
            .iter()
            .map(|ts| format!("{:?} {:?}", wire::labels_of(r, ts).unwrap(), ts.samples))
            .collect()
    };
    let want: Vec<String> = parts
        .iter()
        .flat_map(|p| series(&wire::decode_v2(&p.body).unwrap()))
        .collect();
    let have = series(&wire::decode_v2(&merged.body).unwrap());
    assert_eq!(have.len(), want.len());
    assert!(have == want, "the merged series differ from the parts'");
    assert_eq!(merged.samples, parts.iter().map(|p| p.samples).sum::<u32>());
}
