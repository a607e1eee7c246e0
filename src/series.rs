//! The series model: every label set the pipeline has seen, interned once and named by a
//! [`SeriesId`] that stays the same from poll to poll, plus what the pipeline remembers about
//! each series between polls. Nothing here knows a wire protocol: encoders read names and
//! labels through [`SeriesSet::name`] / [`SeriesSet::labels`] and may cache their own form of
//! a label set by id, checking [`SeriesSet::birth`] to notice a reused id.
//!
//! Per-series memory decides which samples are worth sending and which series vanished:
//! - A label set repeated within one poll (the same interface or PVC listed twice) is sent once,
//!   the first time.
//! - The kubelet caches stats for 10-15 s, so polls often repeat a timestamp. A sample is sent
//!   only when its timestamp is newer than the last one sent for its series: receivers answer
//!   400 to a repeated timestamp with a different value and drop the whole request with it.
//! - A series that was in the previous successful poll and is missing from this one gets one
//!   stale marker (Prometheus's special NaN) so queries stop showing it at once. A failed poll
//!   calls `begin_poll` but not `finish_poll`, so it marks nothing stale.
//! - Time is judged against a horizon the caller sets from its own clock
//!   ([`SeriesSet::set_horizon`]): a sample stamped past it is never sent and never remembered
//!   ([`Admit::Future`]), though its series counts as present (no stale marker), so one poll
//!   from a kubelet whose clock ran ahead cannot make every later real sample look old. A last
//!   timestamp that is itself past the horizon (our own clock was ahead and has been put back)
//!   is forgotten rather than waited for: the series goes on at once instead of after the
//!   length of the jump.
//!
//! A family label ([`FamilyLabel`]) is a label every series of a metric name carries, such as
//! the kubelet endpoint a family comes from: it is given with each sample but kept beside the
//! key, not in it, since the name already decides it; it adds nothing to compare.
//!
//! Cost: a known series is found by hashing its borrowed name and labels and comparing them
//! with the interned key in place, so a repeated poll allocates nothing. A new series costs one
//! boxed key. A series marked stale keeps its id until the next `begin_poll`, so the poll that
//! marked it can still encode its marker.
//!
//! Pure: no I/O, no clock.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;

/// Prometheus's staleness marker: a NaN with these exact bits, distinct from an ordinary NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the staleness marker (an ordinary NaN is not).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A label set interned in a [`SeriesSet`]. Stable while the series lives; after it is
/// forgotten the id may be given to another label set, with a new [`SeriesSet::birth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(u32);

impl SeriesId {
    /// A small dense number, for encoders that keep a per-series cache in a vector.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A series as a caller may remember it between polls: its id, and which series had the id
/// then ([`SeriesSet::birth`]), so that a reused id is not taken for the old series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub id: SeriesId,
    birth: u32,
}

impl Handle {
    /// The handle as one number, for a cache that keeps a `u64` per entry.
    pub fn to_bits(self) -> u64 {
        u64::from(self.id.0) << 32 | u64::from(self.birth)
    }

    pub fn from_bits(bits: u64) -> Handle {
        Handle {
            id: SeriesId((bits >> 32) as u32),
            birth: bits as u32,
        }
    }
}

/// One sample of one series, ready to encode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub id: SeriesId,
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// When the counter started (milliseconds since the Unix epoch), 0 when unknown: carried
    /// per point, not per series, since it belongs to the sample (a container that restarts
    /// keeps its series and gets a new start) and only Remote Write 2.0 sends it. Adding it
    /// here leaves [`SeriesSet`]'s per-series memory as it was.
    pub start_ms: i64,
}

/// An exemplar of one point (an OpenMetrics `# {trace_id="…"} value timestamp`), sent by
/// Remote Write 2.0 only, as Prometheus sends them: in the point's series, after its sample.
/// Rare (a few per scrape at most), so it owns its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The index of its point in the points it is encoded with; a poll's exemplars are in
    /// ascending order of it.
    pub point: u32,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    /// Milliseconds since the Unix epoch: the exemplar's own, or its scrape's when it has
    /// none (as Prometheus stamps it).
    pub timestamp_ms: i64,
}

/// What to do with one converted sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// New series, or a newer timestamp: send it.
    Send(SeriesId),
    /// Same label set already seen in this poll: drop it.
    Duplicate,
    /// Timestamp not newer than the last one sent for this series: drop it.
    NotNewer,
    /// Timestamp past the horizon (from the future): drop it, remember nothing but that the
    /// series is present.
    Future,
}

/// Labels every series carries: `job`, `instance`, `node` and the `--label` ones, sorted by
/// name, none empty. Validated at start-up, so none collides with a metric's own labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommonLabels {
    pairs: Vec<(String, String)>,
}

impl CommonLabels {
    pub fn new(job: &str, node: &str, external: &[(String, String)]) -> Self {
        let mut pairs = vec![
            ("instance".to_owned(), node.to_owned()),
            ("job".to_owned(), job.to_owned()),
            ("node".to_owned(), node.to_owned()),
        ];
        pairs.extend(external.iter().cloned());
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort();
        CommonLabels { pairs }
    }

    /// Labels a caller assembled itself (a scrape target's): sorted here, empty values
    /// left out.
    pub fn from_sorted(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort();
        CommonLabels { pairs }
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.pairs
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    /// Marked stale by the last `finish_poll`; freed by the next `begin_poll`.
    Stale,
    Free,
}

/// A label decided by the metric name alone (see the module doc): every sample of a name must
/// give the same one.
pub type FamilyLabel = Option<&'static (&'static str, &'static str)>;

struct Slot {
    family: FamilyLabel,
    /// The name and the labels in emission order, each string preceded by its length (see
    /// `put_str`): unambiguous whatever a label holds. Empty when free.
    key: Box<str>,
    last_sent_ms: i64,
    /// Generation of the last poll that saw it; another one means "vanished". Compared for
    /// equality only, so wrapping (after 2^32 polls) is harmless.
    seen: u32,
    /// Bumped whenever the slot is given to a new label set, so a cache keyed by
    /// [`SeriesId`] can tell its entry is for an earlier series.
    birth: u32,
    /// The slot admitted right after this one in the last poll that saw it: the guess for the
    /// next sample (checked, never trusted).
    next: u32,
    state: State,
    /// Whether its vanishing gets a stale marker: false when its last sample carried the
    /// exporter's own timestamp ([`SeriesSet::admit_untracked`]).
    tracked: bool,
}

/// No slot.
const NONE: u32 = u32::MAX;

/// Every series the pipeline knows, and its memory between polls. See the module doc.
pub struct SeriesSet {
    slots: Vec<Slot>,
    /// Indexes of free slots, reused before the vector grows.
    free: Vec<u32>,
    /// Live and stale slots by the hash of their key.
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    generation: u32,
    /// Slots marked stale by the last `finish_poll`.
    dying: Vec<u32>,
    common: CommonLabels,
    live: usize,
    /// The slot admitted last in this poll, and the first one admitted in the last poll: where
    /// the order of the previous poll is followed from.
    cursor: u32,
    first: u32,
    /// The latest believable timestamp (see the module doc); `i64::MAX` until set.
    horizon_ms: i64,
    /// Time of the last poll started with [`SeriesSet::start_poll`].
    last_poll_ms: i64,
}

impl Default for SeriesSet {
    fn default() -> Self {
        Self::new(CommonLabels::default())
    }
}

impl SeriesSet {
    pub fn new(common: CommonLabels) -> Self {
        SeriesSet {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            generation: 0,
            dying: Vec::new(),
            common,
            live: 0,
            cursor: NONE,
            first: NONE,
            horizon_ms: i64::MAX,
            last_poll_ms: i64::MIN,
        }
    }

    /// Starts a poll (or a scrape) read at `now_ms` on the caller's clock, which may be off by
    /// up to `allowance_ms`: sets the horizon to `now_ms + allowance_ms` and begins the poll
    /// ([`SeriesSet::begin_poll`]). Returns the poll's time: `now_ms`, raised to a millisecond
    /// after the previous poll's so the per-poll series never repeat a timestamp, unless the
    /// clock was put back by more than the allowance (the previous time was wrong, and waiting
    /// for it would hold the per-poll series back for the length of the jump).
    pub fn start_poll(&mut self, now_ms: i64, allowance_ms: i64) -> i64 {
        let jumped_back = self.last_poll_ms > now_ms.saturating_add(allowance_ms);
        let poll_ms = if jumped_back {
            now_ms
        } else {
            now_ms.max(self.last_poll_ms.saturating_add(1))
        };
        self.last_poll_ms = poll_ms;
        self.set_horizon(poll_ms.saturating_add(allowance_ms));
        self.begin_poll();
        poll_ms
    }

    /// Sets the latest timestamp a sample may carry from now on: the caller's clock plus an
    /// allowance. Samples past it are [`Admit::Future`]; remembered timestamps past it are
    /// forgotten.
    pub fn set_horizon(&mut self, horizon_ms: i64) {
        self.horizon_ms = horizon_ms;
    }

    /// The horizon last set.
    pub fn horizon(&self) -> i64 {
        self.horizon_ms
    }

    /// Number of series remembered (live ones; not those waiting for their stale marker to go
    /// out).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Makes room for `additional` more series at once, so a first poll does not grow the
    /// tables step by step.
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .reserve(additional, |&j| hash_key(hasher, &slots[j as usize].key));
    }

    pub fn common(&self) -> &CommonLabels {
        &self.common
    }

    /// Replaces the common labels. A real change forgets every series without marking any
    /// stale: nothing sent so far carries the new labels, so nothing can be matched any more.
    /// Returns whether anything changed.
    pub fn set_common(&mut self, common: CommonLabels) -> bool {
        if common == self.common {
            return false;
        }
        self.common = common;
        self.clear();
        true
    }

    /// Starts a poll: every series it does not admit is stale at `finish_poll`. Series marked
    /// stale by the previous poll are forgotten now, after their markers were encoded.
    pub fn begin_poll(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.cursor = NONE;
        for i in std::mem::take(&mut self.dying) {
            self.release(i);
        }
    }

    /// Decides whether a sample of series `name{labels}` stamped `timestamp_ms` is sent, and
    /// remembers it.
    pub fn admit(&mut self, name: &str, labels: &[(&str, &str)], timestamp_ms: i64) -> Admit {
        self.admit_in(name, None, labels, timestamp_ms)
    }

    /// [`SeriesSet::admit`] for a metric whose series all carry `family` too.
    pub fn admit_in(
        &mut self,
        name: &str,
        family: FamilyLabel,
        labels: &[(&str, &str)],
        timestamp_ms: i64,
    ) -> Admit {
        self.admit_tracked(name, family, labels, timestamp_ms, true)
    }

    /// [`SeriesSet::admit`] for a sample that carried its own timestamp (a scraped line with
    /// one): if the series vanishes after this, it is forgotten without a stale marker, as
    /// Prometheus's scrape loop does, since the exporter decides when its samples end.
    pub fn admit_untracked(&mut self, name: &str, labels: &[(&str, &str)], ts: i64) -> Admit {
        self.admit_tracked(name, None, labels, ts, false)
    }

    /// [`SeriesSet::admit`] (`tracked`) or [`SeriesSet::admit_untracked`], which also gives
    /// the series' [`Handle`] (whatever the answer), for a caller that remembers which series
    /// an input names and admits it again with [`SeriesSet::admit_handle`].
    pub fn admit_with_handle(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        timestamp_ms: i64,
        tracked: bool,
    ) -> (Admit, Handle) {
        let future = timestamp_ms > self.horizon_ms;
        // A series first met with a sample from the future starts with nothing sent.
        let remembered = if future { i64::MIN } else { timestamp_ms };
        let (i, new) = match self.predict(name, labels) {
            Some(i) => (i, false),
            None => self.find_or_insert(name, None, labels, remembered),
        };
        let handle = Handle {
            id: SeriesId(i),
            birth: self.slots[i as usize].birth,
        };
        (self.admit_slot(i, new, timestamp_ms, tracked), handle)
    }

    /// Whether `handle` still names a live series (not vanished, its id not reused).
    pub fn is_live(&self, handle: Handle) -> bool {
        self.slots
            .get(handle.id.0 as usize)
            .is_some_and(|slot| slot.state == State::Live && slot.birth == handle.birth)
    }

    /// Admits a sample of the series `handle` names, as [`SeriesSet::admit_with_handle`]
    /// would for its name and labels, without looking them up; `None` when the handle no
    /// longer names a live series (it vanished, and its id may be another series' now): then
    /// the caller admits by name and labels.
    #[inline]
    pub fn admit_handle(
        &mut self,
        handle: Handle,
        timestamp_ms: i64,
        tracked: bool,
    ) -> Option<Admit> {
        let i = handle.id.0;
        let slot = self.slots.get(i as usize)?;
        if slot.state != State::Live || slot.birth != handle.birth {
            return None;
        }
        Some(self.admit_slot(i, false, timestamp_ms, tracked))
    }

    fn admit_tracked(
        &mut self,
        name: &str,
        family: FamilyLabel,
        labels: &[(&str, &str)],
        timestamp_ms: i64,
        tracked: bool,
    ) -> Admit {
        let future = timestamp_ms > self.horizon_ms;
        // A series first met with a sample from the future starts with nothing sent.
        let remembered = if future { i64::MIN } else { timestamp_ms };
        let (i, new) = match self.predict(name, labels) {
            Some(i) => (i, false),
            None => self.find_or_insert(name, family, labels, remembered),
        };
        self.admit_slot(i, new, timestamp_ms, tracked)
    }

    /// The rest of an admission once the sample's slot `i` is found (`new`: made for it).
    #[inline]
    fn admit_slot(&mut self, i: u32, new: bool, timestamp_ms: i64, tracked: bool) -> Admit {
        let future = timestamp_ms > self.horizon_ms;
        // Remember the order for the next poll's prediction.
        match self.cursor {
            NONE => self.first = i,
            c => self.slots[c as usize].next = i,
        }
        self.cursor = i;
        if self.slots[i as usize].seen != self.generation || new {
            self.slots[i as usize].tracked = tracked;
        }
        if new {
            return if future {
                Admit::Future
            } else {
                Admit::Send(SeriesId(i))
            };
        }
        let generation = self.generation;
        let horizon = self.horizon_ms;
        let slot = &mut self.slots[i as usize];
        if slot.seen == generation {
            return Admit::Duplicate;
        }
        slot.seen = generation;
        if future {
            return Admit::Future;
        }
        if timestamp_ms <= slot.last_sent_ms && slot.last_sent_ms <= horizon {
            return Admit::NotNewer;
        }
        slot.last_sent_ms = timestamp_ms;
        Admit::Send(SeriesId(i))
    }

    /// The series that followed the previous one in the last poll, if this sample is it: a
    /// node whose pods did not change emits its samples in the same order every poll, so most
    /// lookups are one comparison with no hashing.
    fn predict(&self, name: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let guess = match self.cursor {
            NONE => self.first,
            c => self.slots[c as usize].next,
        };
        let slot = self.slots.get(guess as usize)?;
        (slot.state == State::Live && key_matches(&slot.key, name, labels)).then_some(guess)
    }

    /// The slot of `name{labels}`, and whether it was created now.
    fn find_or_insert(
        &mut self,
        name: &str,
        family: FamilyLabel,
        labels: &[(&str, &str)],
        timestamp_ms: i64,
    ) -> (u32, bool) {
        let hash = self.hash(name, labels);
        let slots = &self.slots;
        let found = self.index.find(hash, |&i| {
            let s = &slots[i as usize];
            s.state == State::Live && key_matches(&s.key, name, labels)
        });
        if let Some(&i) = found {
            return (i, false);
        }
        let key = encode_key(name, labels);
        let generation = self.generation;
        let i = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.key = key;
                slot.family = family;
                slot.last_sent_ms = timestamp_ms;
                slot.seen = generation;
                slot.birth = slot.birth.wrapping_add(1);
                slot.state = State::Live;
                slot.next = NONE;
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot {
                    family,
                    key,
                    last_sent_ms: timestamp_ms,
                    seen: generation,
                    birth: 0,
                    next: NONE,
                    state: State::Live,
                    tracked: true,
                });
                i
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hash_key(hasher, &slots[j as usize].key));
        self.live += 1;
        (i, true)
    }

    /// Ends a successful poll: every live series this poll did not see gets its stale marker,
    /// handed to `stale` stamped `now_ms` (or just after the series' last sample if the
    /// kubelet's clock runs ahead of ours, within the horizon), and is forgotten at the next
    /// `begin_poll`.
    pub fn finish_poll(&mut self, now_ms: i64, mut stale: impl FnMut(Point)) {
        let generation = self.generation;
        let horizon = self.horizon_ms;
        let mut untracked = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.state != State::Live || slot.seen == generation {
                continue;
            }
            if !slot.tracked {
                untracked.push(i as u32);
                continue;
            }
            slot.state = State::Stale;
            self.live -= 1;
            self.dying.push(i as u32);
            stale(Point {
                id: SeriesId(i as u32),
                value: f64::from_bits(STALE_NAN_BITS),
                timestamp_ms: if slot.last_sent_ms > horizon {
                    now_ms
                } else {
                    now_ms.max(slot.last_sent_ms.saturating_add(1))
                },
                start_ms: 0,
            });
        }
        for i in untracked {
            self.release(i);
        }
    }

    /// Forgets every series without marking anything stale.
    pub fn clear(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].state != State::Free {
                self.release(i as u32);
            }
        }
        self.dying.clear();
        self.live = 0;
        self.cursor = NONE;
        self.first = NONE;
    }

    /// The metric name of series `id`.
    pub fn name(&self, id: SeriesId) -> &str {
        let key = &self.slots[id.index()].key;
        let mut at = 0;
        next_str(key, &mut at).unwrap_or("")
    }

    /// The metric's own labels of series `id`: its family label if it has one, then the
    /// others in emission order (common labels not included; empty values included, as
    /// converted).
    pub fn labels(&self, id: SeriesId) -> Labels<'_> {
        let slot = &self.slots[id.index()];
        let key = &slot.key;
        let mut at = 0;
        let _ = next_str(key, &mut at);
        Labels {
            family: slot.family.copied(),
            key,
            at,
        }
    }

    /// Changes whenever `id` is given to a different label set.
    pub fn birth(&self, id: SeriesId) -> u32 {
        self.slots[id.index()].birth
    }

    /// One past the largest id in use, for encoders sizing a cache.
    pub fn id_bound(&self) -> usize {
        self.slots.len()
    }

    fn release(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if slot.state == State::Free {
            return;
        }
        if slot.state == State::Live {
            self.live -= 1;
        }
        let hash = hash_key(&self.hasher, &slot.key);
        slot.state = State::Free;
        slot.key = Box::default();
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        self.free.push(i);
    }

    /// Hashes the parts of a label set; `hash_key` feeds the same parts from a key.
    fn hash(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_usize(name.len());
        h.write(name.as_bytes());
        for (n, v) in labels {
            h.write_usize(n.len());
            h.write(n.as_bytes());
            h.write_usize(v.len());
            h.write(v.as_bytes());
        }
        h.finish()
    }
}

/// The labels of one series: its family label, then the ones read from its interned key.
#[derive(Clone)]
pub struct Labels<'a> {
    family: Option<(&'static str, &'static str)>,
    key: &'a str,
    at: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(family) = self.family.take() {
            return Some(family);
        }
        let name = next_str(self.key, &mut self.at)?;
        let value = next_str(self.key, &mut self.at)?;
        Some((name, value))
    }
}

/// The hash of the label set a key holds: the same as `SeriesSet::hash` of its parts (the
/// table needs it again only when it grows, so slots do not store it).
fn hash_key(hasher: &foldhash::fast::RandomState, key: &str) -> u64 {
    let mut h = hasher.build_hasher();
    let mut at = 0;
    while let Some(part) = next_str(key, &mut at) {
        h.write_usize(part.len());
        h.write(part.as_bytes());
    }
    h.finish()
}

/// Lengths are written as characters below U+8000, so the key is a `str` and reading a label
/// back is a slice, not a UTF-8 validation: 14 bits per character, U+4000 set on every
/// character but the last. A length below 128 is one ASCII byte.
const LEN_BITS: u32 = 14;
const LEN_MORE: u32 = 1 << LEN_BITS;

fn encode_key(name: &str, labels: &[(&str, &str)]) -> Box<str> {
    let len = key_part_len(name)
        + labels
            .iter()
            .map(|(n, v)| key_part_len(n) + key_part_len(v))
            .sum::<usize>();
    let mut key = String::with_capacity(len);
    put_str(&mut key, name);
    for (n, v) in labels {
        put_str(&mut key, n);
        put_str(&mut key, v);
    }
    debug_assert_eq!(
        key.len(),
        len,
        "capacity is exact, so boxing does not reallocate"
    );
    key.into_boxed_str()
}

/// Bytes one string takes in a key: its length characters and itself.
fn key_part_len(s: &str) -> usize {
    let mut n = s.len();
    let mut bytes = s.len();
    while n >= LEN_MORE as usize {
        bytes += len_char(LEN_MORE | (n as u32 & (LEN_MORE - 1))).len_utf8();
        n >>= LEN_BITS;
    }
    bytes + len_char(n as u32).len_utf8()
}

fn put_str(out: &mut String, s: &str) {
    let mut n = s.len();
    while n >= LEN_MORE as usize {
        out.push(len_char(LEN_MORE | (n as u32 & (LEN_MORE - 1))));
        n >>= LEN_BITS;
    }
    out.push(len_char(n as u32));
    out.push_str(s);
}

/// Every value passed is below U+8000, so never a surrogate.
fn len_char(v: u32) -> char {
    char::from_u32(v).unwrap_or('\0')
}

/// Reads one length-prefixed string at `*at`.
#[inline]
fn next_str<'a>(key: &'a str, at: &mut usize) -> Option<&'a str> {
    let (len, start) = read_len(key.as_bytes(), *at)?;
    let end = start.checked_add(len)?;
    let s = key.get(start..end)?;
    *at = end;
    Some(s)
}

/// Reads a length at byte `at`: its characters are below U+8000, so one to three UTF-8 bytes.
#[inline]
fn read_len(key: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut len = 0usize;
    let mut shift = 0u32;
    loop {
        let b0 = u32::from(*key.get(at)?);
        let digit = if b0 < 0x80 {
            at += 1;
            b0
        } else if b0 & 0xe0 == 0xc0 {
            let b1 = u32::from(*key.get(at + 1)?);
            at += 2;
            (b0 & 0x1f) << 6 | (b1 & 0x3f)
        } else {
            let b1 = u32::from(*key.get(at + 1)?);
            let b2 = u32::from(*key.get(at + 2)?);
            at += 3;
            (b0 & 0x0f) << 12 | (b1 & 0x3f) << 6 | (b2 & 0x3f)
        };
        len |= ((digit & (LEN_MORE - 1)) as usize).checked_shl(shift)?;
        if digit & LEN_MORE == 0 {
            return Some((len, at));
        }
        shift += LEN_BITS;
    }
}

/// Whether `key` is the interned form of `name{labels}`, compared in place.
#[inline]
fn key_matches(key: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    let key = key.as_bytes();
    let mut at = 0;
    if !part_matches(key, &mut at, name.as_bytes()) {
        return false;
    }
    for (n, v) in labels {
        if !part_matches(key, &mut at, n.as_bytes()) || !part_matches(key, &mut at, v.as_bytes()) {
            return false;
        }
    }
    at == key.len()
}

/// Whether the string at `*at` in `key` is `s`; moves past it if so.
#[inline]
fn part_matches(key: &[u8], at: &mut usize, s: &[u8]) -> bool {
    let start = if s.len() < 0x80 {
        // The common case: a one-byte length, compared as a byte.
        if key.get(*at) != Some(&(s.len() as u8)) {
            return false;
        }
        *at + 1
    } else {
        match read_len(key, *at) {
            Some((len, start)) if len == s.len() => start,
            _ => return false,
        }
    };
    let end = start + s.len();
    match key.get(start..end) {
        Some(part) if bytes_eq(part, s) => {
            *at = end;
            true
        }
        _ => false,
    }
}

/// `a == b` for two slices of the same length, without a call to `memcmp` for the short ones
/// label names and values mostly are (a library call per label costs more than the bytes).
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    match n {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        // Two words that overlap in the middle cover the whole of 8 to 16 bytes.
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn bytes_eq_is_slice_equality() {
        let text = b"0123456789abcdefghijklmnopqrstuvwxyz";
        for n in 0..=24 {
            for shift in 0..4 {
                let a = &text[shift..shift + n];
                let mut b = a.to_vec();
                assert!(bytes_eq(a, &b), "{n}");
                for i in 0..n {
                    b[i] ^= 1;
                    assert!(!bytes_eq(a, &b), "{n} {i}");
                    b[i] ^= 1;
                }
                assert!(!bytes_eq(a, &text[..n + 1]));
            }
        }
    }

    fn admit(t: &mut SeriesSet, name: &str, pod: &str, ts: i64) -> Admit {
        t.admit(name, &[("namespace", "ns"), ("pod", pod)], ts)
    }

    fn sent(a: Admit) -> bool {
        matches!(a, Admit::Send(_))
    }

    fn stale_of(t: &mut SeriesSet, now: i64) -> Vec<(String, i64)> {
        let mut points = Vec::new();
        t.finish_poll(now, |p| points.push(p));
        let mut out: Vec<(String, i64)> = points
            .iter()
            .map(|p| {
                assert!(is_stale_marker(p.value));
                let pod = t.labels(p.id).find(|l| l.0 == "pod").map_or("", |l| l.1);
                (format!("{}/{pod}", t.name(p.id)), p.timestamp_ms)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn sends_only_newer_timestamps() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", 1000)));
        assert!(stale_of(&mut t, 5000).is_empty());
        t.begin_poll();
        assert_eq!(admit(&mut t, "m", "a", 1000), Admit::NotNewer);
        assert!(stale_of(&mut t, 6000).is_empty());
        t.begin_poll();
        assert_eq!(admit(&mut t, "m", "a", 999), Admit::NotNewer);
        assert!(sent(admit(&mut t, "m", "b", 999)));
        assert!(stale_of(&mut t, 7000).is_empty());
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", 1001)));
    }

    #[test]
    fn ids_are_stable_across_polls() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        let Admit::Send(a) = admit(&mut t, "m", "a", 1) else {
            panic!("new series is sent")
        };
        let Admit::Send(b) = admit(&mut t, "m", "b", 1) else {
            panic!("new series is sent")
        };
        assert_ne!(a, b);
        t.begin_poll();
        assert_eq!(admit(&mut t, "m", "b", 2), Admit::Send(b));
        assert_eq!(admit(&mut t, "m", "a", 2), Admit::Send(a));
        assert_eq!(t.name(a), "m");
        assert_eq!(
            t.labels(b).collect::<Vec<_>>(),
            vec![("namespace", "ns"), ("pod", "b")]
        );
    }

    #[test]
    fn drops_repeated_label_sets_within_a_poll() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", 1000)));
        assert_eq!(admit(&mut t, "m", "a", 2000), Admit::Duplicate);
        assert!(sent(admit(&mut t, "other", "a", 1000)));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn keys_are_unambiguous_whatever_the_bytes() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        // Joined naively, each pair would read "a\0b" / "c".
        assert!(sent(t.admit("m", &[("a", "b\0c")], 1)));
        assert!(sent(t.admit("m", &[("a\0b", "c")], 1)));
        assert!(sent(t.admit("m", &[("a", "b"), ("", "c")], 1)));
        assert!(sent(t.admit("m", &[], 1)));
        assert!(sent(t.admit("m\0", &[], 1)));
        let huge = "y".repeat(70_000);
        assert!(sent(t.admit("m", &[("big", &huge)], 1)));
        let Admit::Send(id) = t.admit(&huge, &[], 1) else {
            panic!("new series")
        };
        assert_eq!(t.name(id), huge);
        assert_eq!(t.admit("m", &[("big", &huge)], 2), Admit::Duplicate);
        let long = "x".repeat(300);
        assert!(sent(t.admit(&long, &[(&long, &long)], 1)));
        assert_eq!(t.admit(&long, &[(&long, &long)], 2), Admit::Duplicate);
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn marks_vanished_series_stale_once() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        admit(&mut t, "m", "a", 1000);
        admit(&mut t, "m", "b", 1000);
        assert!(stale_of(&mut t, 1500).is_empty());
        t.begin_poll();
        admit(&mut t, "m", "a", 2000);
        assert_eq!(stale_of(&mut t, 2500), vec![("m/b".to_owned(), 2500)]);
        t.begin_poll();
        admit(&mut t, "m", "a", 3000);
        assert!(
            stale_of(&mut t, 3500).is_empty(),
            "a stale marker is sent once"
        );
        assert_eq!(t.len(), 1);
    }

    /// A sample past the horizon is neither sent nor remembered, and keeps its series alive.
    #[test]
    fn a_sample_from_the_future_never_poisons_the_series() {
        let mut t = SeriesSet::default();
        t.set_horizon(100_000);
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", 10_000)));
        assert_eq!(admit(&mut t, "m", "new", 86_400_000), Admit::Future);
        assert!(stale_of(&mut t, 10_000).is_empty());
        t.begin_poll();
        assert_eq!(admit(&mut t, "m", "a", 86_410_000), Admit::Future);
        assert_eq!(admit(&mut t, "m", "new", 86_410_000), Admit::Future);
        assert!(stale_of(&mut t, 20_000).is_empty(), "present, not stale");
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", 20_000)), "not held back a day");
        assert!(
            sent(admit(&mut t, "m", "new", 20_000)),
            "nothing was sent before"
        );
        assert_eq!(admit(&mut t, "m", "a", 20_000), Admit::Duplicate);
        stale_of(&mut t, 20_000);
        t.begin_poll();
        assert_eq!(admit(&mut t, "m", "a", 20_000), Admit::NotNewer);
        assert_eq!(stale_of(&mut t, 30_000), vec![("m/new".to_owned(), 30_000)]);
    }

    /// Our own clock was a day ahead (so were the samples) and is put back: the series goes on
    /// at once, and its stale marker is not stamped a day ahead either.
    #[test]
    fn a_remembered_time_past_the_horizon_is_forgotten() {
        let day = 86_400_000;
        let mut t = SeriesSet::default();
        t.set_horizon(day + 100_000);
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", day + 10_000)));
        assert!(sent(admit(&mut t, "m", "b", day + 10_000)));
        stale_of(&mut t, day + 10_000);
        t.set_horizon(100_000);
        t.begin_poll();
        assert!(sent(admit(&mut t, "m", "a", 20_000)));
        assert_eq!(stale_of(&mut t, 20_000), vec![("m/b".to_owned(), 20_000)]);
        t.begin_poll();
        assert_eq!(
            admit(&mut t, "m", "a", 15_000),
            Admit::NotNewer,
            "within the horizon"
        );
    }

    #[test]
    fn stale_marker_follows_the_last_sample_when_the_kubelet_clock_is_ahead() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        admit(&mut t, "m", "a", 10_000);
        stale_of(&mut t, 0);
        t.begin_poll();
        assert_eq!(stale_of(&mut t, 9_000), vec![("m/a".to_owned(), 10_001)]);
    }

    #[test]
    fn a_series_that_returns_is_new_again_with_a_new_birth() {
        let mut t = SeriesSet::default();
        t.begin_poll();
        let Admit::Send(first) = admit(&mut t, "m", "a", 1000) else {
            panic!()
        };
        let born = t.birth(first);
        stale_of(&mut t, 1000);
        t.begin_poll();
        assert_eq!(stale_of(&mut t, 2000).len(), 1);
        assert!(t.is_empty());
        t.begin_poll();
        let Admit::Send(again) = admit(&mut t, "m", "a", 3000) else {
            panic!("a returning series is sent")
        };
        assert_eq!(again, first, "the freed id is reused");
        assert_ne!(t.birth(again), born, "and its birth tells caches apart");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_change_of_common_labels_forgets_everything_without_markers() {
        let mut t = SeriesSet::new(CommonLabels::new("j", "n1", &[]));
        t.begin_poll();
        admit(&mut t, "m", "a", 1000);
        stale_of(&mut t, 1000);
        assert!(!t.set_common(CommonLabels::new("j", "n1", &[])));
        assert_eq!(t.len(), 1);
        assert!(t.set_common(CommonLabels::new("j", "n2", &[])));
        assert!(t.is_empty());
        t.begin_poll();
        assert!(stale_of(&mut t, 2000).is_empty());
        t.begin_poll();
        assert!(
            sent(admit(&mut t, "m", "a", 1000)),
            "new again, same timestamp"
        );
    }

    /// Whatever the order of samples from poll to poll (the prediction is a guess), every
    /// answer matches a plain map keyed by the label set.
    #[test]
    fn answers_match_a_plain_map_whatever_the_order() {
        use std::collections::HashMap;
        let mut rng = SplitMix64::new(0x2545_f491_4f6c_dd1d);
        let pods: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
        let mut t = SeriesSet::default();
        // label set -> (last sent, poll last seen, id)
        let mut reference: HashMap<String, (i64, u64, SeriesId)> = HashMap::new();
        for poll in 1..=40u64 {
            t.begin_poll();
            let mut order: Vec<usize> = (0..pods.len()).filter(|_| rng.below(10) > 1).collect();
            if rng.below(3) == 0 {
                // A different order now and then, with a repeat thrown in.
                order.reverse();
                order.push(order[0]);
            }
            for &p in &order {
                let ts = 1000 * (poll as i64) - 1000 * (rng.below(3) as i64);
                let got = admit(&mut t, "m", &pods[p], ts);
                let want = match reference.get_mut(&pods[p]) {
                    Some((_, seen, _)) if *seen == poll => Admit::Duplicate,
                    Some((last, seen, _)) if ts <= *last => {
                        *seen = poll;
                        Admit::NotNewer
                    }
                    Some((last, seen, id)) => {
                        *last = ts;
                        *seen = poll;
                        Admit::Send(*id)
                    }
                    None => {
                        let Admit::Send(id) = got else {
                            panic!("poll {poll}: {} is new: {got:?}", pods[p])
                        };
                        reference.insert(pods[p].clone(), (ts, poll, id));
                        Admit::Send(id)
                    }
                };
                assert_eq!(got, want, "poll {poll}, {}", pods[p]);
            }
            let mut stale = Vec::new();
            t.finish_poll(poll as i64 * 1000, |pt| stale.push(pt.id));
            let mut gone: Vec<SeriesId> = reference
                .values()
                .filter(|(_, seen, _)| *seen != poll)
                .map(|(_, _, id)| *id)
                .collect();
            gone.sort();
            stale.sort();
            assert_eq!(stale, gone, "poll {poll}: stale markers");
            reference.retain(|_, (_, seen, _)| *seen == poll);
            assert_eq!(t.len(), reference.len(), "poll {poll}");
        }
    }

    #[test]
    fn a_key_hashes_like_its_parts() {
        let t = SeriesSet::default();
        let long = "z".repeat(20_000);
        for (name, labels) in [
            ("m", vec![]),
            ("m", vec![("a", ""), ("", "b")]),
            (long.as_str(), vec![("pod", long.as_str()), ("é", "名")]),
        ] {
            let key = encode_key(name, &labels);
            assert_eq!(hash_key(&t.hasher, &key), t.hash(name, &labels));
        }
    }

    #[test]
    fn many_series_come_and_go_without_growing() {
        let mut t = SeriesSet::default();
        for round in 0..20 {
            t.begin_poll();
            for pod in 0..50 {
                let name = format!("p{round}-{pod}");
                assert!(sent(admit(&mut t, "m", &name, 1)));
            }
            stale_of(&mut t, 2);
        }
        // 50 live, 50 dying, and slots reused ever since.
        assert!(t.id_bound() <= 100, "{}", t.id_bound());
        assert_eq!(t.len(), 50);
    }
}
