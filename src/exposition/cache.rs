//! [`SeriesTexts`]: what one target's text-format parses remember from scrape to scrape, so
//! that a line seen before is read without lexing its labels again. Prometheus's scrape loop
//! keeps the same kind of cache (keyed by the series text of a line, `scrapeCache`).
//!
//! The key is a sample line's series text as written: the bytes from the metric name to the
//! `}` that closes its label set (the name alone when it has none). A line is lexed the same
//! way whatever comes after that text, so equal bytes mean an equal name and equal labels, and
//! what was checked about them alone (a well-formed label set, no repeated label name, no
//! `__name__`) holds again. Everything that depends on the rest of the exposition (which
//! family the name belongs to, whether its TYPE came first, a summary's `quantile` or a
//! histogram's `le` label being required) is still checked on every line by the parser, with
//! the facts the entry keeps (does the line have a numeric `quantile`, a numeric `le`). The
//! value and timestamp are always read.
//!
//! Only the common shape is cached: a legacy metric name, then nothing or a label set of
//! legacy names without escapes, blanks or a trailing comma. Any other line is lexed every
//! time, as without a cache.
//!
//! Lookup: the entry of the line that followed the previous one in the last parse is tried
//! first, by comparing its bytes with the line's; an exposition that keeps its order (they
//! nearly all do) is read with one comparison per line. Otherwise the line is lexed, its text
//! hashed and looked up, and added when it is new.
//!
//! Memory: the keys, in one buffer, and about 40 bytes per entry. After a parse that
//! succeeded, entries its body did not have are dropped, so the cache holds the lines of the
//! last exposition; after a failed one, those of the last good exposition and of the failed
//! one. Dropped keys are compacted away once they are half the buffer.
//!
//! Each entry carries a tag for the caller (the scrape loop's series id), which the parser
//! never reads: it is cleared when the entry is created, and set with
//! [`SeriesTexts::set_tag`].

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::model::{Exposition, SeriesText};

/// No entry.
const NONE: u32 = u32::MAX;

/// One target's known series texts; see the module doc.
pub struct SeriesTexts {
    entries: Vec<Entry>,
    /// Indexes of dropped entries, reused first.
    free: Vec<u32>,
    /// The keys, back to back; dropped ones stay until compacted.
    keys: Vec<u8>,
    /// Bytes of `keys` that belong to dropped entries.
    dead_bytes: usize,
    table: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Bumped by every parse; an entry's `seen` says which parse met it last.
    generation: u32,
    /// The generation of the last parse that succeeded.
    good: u32,
    /// Entries met by the current parse.
    met: usize,
    /// The entry of the previous sample line of the current parse, and the first entry of the
    /// last parse: where predictions start from.
    cursor: u32,
    first: u32,
    /// Families in the last parse: the parser's table of them starts that large.
    pub(super) families_hint: usize,
    /// The buffers of an exposition the caller is done with ([`SeriesTexts::recycle`]).
    spare: Option<Exposition>,
}

struct Entry {
    /// `keys[start..start + len]`.
    start: u32,
    len: u32,
    hash: u64,
    /// The metric name is the first `name_len` bytes of the key.
    name_len: u32,
    /// Where the label set's `{` is in the key; 0 when there is none.
    brace: u32,
    /// The entry of the line that followed this one in the last parse that met it.
    next: u32,
    seen: u32,
    facts: Facts,
    tag: Option<u64>,
    free: bool,
}

/// What the parser needs to know of a line's labels for the checks that depend on its family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// A `quantile` label whose value is a number.
    pub numeric_quantile: bool,
    /// A `le` label whose value is a number.
    pub numeric_le: bool,
}

/// A cached line as the parser reads it.
pub(super) struct Known {
    pub text: SeriesText,
    /// The length of the series text (the key).
    pub len: usize,
    pub name_len: usize,
    /// Where the `{` is in the series text; 0 when there is none.
    pub brace: usize,
    pub facts: Facts,
}

impl Default for SeriesTexts {
    fn default() -> Self {
        SeriesTexts {
            entries: Vec::new(),
            free: Vec::new(),
            keys: Vec::new(),
            dead_bytes: 0,
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            generation: 0,
            good: 0,
            met: 0,
            cursor: NONE,
            first: NONE,
            families_hint: 0,
            spare: None,
        }
    }
}

impl SeriesTexts {
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of series texts remembered.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the keys, dropped ones not yet compacted included.
    pub fn key_bytes(&self) -> usize {
        self.keys.len()
    }

    /// Forgets every series text.
    pub fn clear(&mut self) {
        let spare = self.spare.take();
        *self = SeriesTexts::new();
        self.spare = spare;
    }

    /// The caller's tag of `text`, if it set one since the entry was made.
    pub fn tag(&self, text: SeriesText) -> Option<u64> {
        self.entries.get(text.0 as usize).and_then(|e| e.tag)
    }

    /// Sets the caller's tag of `text` (the entry of a sample of the last parse).
    pub fn set_tag(&mut self, text: SeriesText, tag: u64) {
        if let Some(e) = self.entries.get_mut(text.0 as usize) {
            e.tag = Some(tag);
        }
    }

    /// Keeps the buffers of an exposition parsed with this cache, once the caller is done
    /// with it, for the next parse: a large body then costs no fresh memory each scrape (the
    /// allocator would give a freed megabyte back to the system and fault it in again).
    pub fn recycle(&mut self, exposition: Exposition) {
        self.spare = Some(exposition);
    }

    /// The exposition to parse `body` into: the recycled one if there is one.
    pub(super) fn exposition(&mut self, body: &str) -> Exposition {
        match self.spare.take() {
            Some(spare) => spare.refill(body),
            None => Exposition::with_body(body),
        }
    }

    /// Starts a parse of a body of `body_len` bytes.
    pub(super) fn begin(&mut self, body_len: usize) {
        if self.entries.is_empty() {
            // A first parse: room at once for what a body of that size holds (nearly all of
            // it keys; lines of some 60 bytes or more), rather than tables and buffers grown
            // step by step, each step a copy.
            self.keys.reserve(body_len);
            self.entries.reserve(body_len / 64);
            let entries = &self.entries;
            self.table
                .reserve(body_len / 64, |&j| entries[j as usize].hash);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == self.good {
            // After 2^32 parses: never equal to the last good one by accident.
            self.generation = self.generation.wrapping_add(1);
        }
        self.met = 0;
        self.cursor = NONE;
    }

    /// Ends a parse: drops the entries it did not meet (and, when it failed, that the last
    /// good parse did not meet either).
    pub(super) fn end(&mut self, ok: bool) {
        if ok {
            self.good = self.generation;
        }
        if self.met == self.len() {
            return;
        }
        let (generation, good) = (self.generation, self.good);
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.free || e.seen == generation || e.seen == good {
                continue;
            }
            self.drop_entry(i as u32);
        }
        if self.dead_bytes > 4096 && self.dead_bytes > self.keys.len() / 2 {
            self.compact();
        }
    }

    /// The entry of the line at `pos` of `line`, if it is the one that followed the previous
    /// line last time: the line starts with its key.
    #[inline]
    pub(super) fn predict(&self, line: &[u8], pos: usize) -> Option<Known> {
        let guess = match self.cursor {
            NONE => self.first,
            c => self.entries.get(c as usize)?.next,
        };
        let e = self.entries.get(guess as usize)?;
        let key = self.key(e);
        if e.free || line.get(pos..pos + key.len()) != Some(key) {
            return None;
        }
        Some(Known {
            text: SeriesText(guess),
            len: key.len(),
            name_len: e.name_len as usize,
            brace: e.brace as usize,
            facts: e.facts,
        })
    }

    /// Notes that the current line is `text`'s: it follows the previous line.
    #[inline]
    pub(super) fn met(&mut self, text: SeriesText) {
        let i = text.0;
        match self.cursor {
            NONE => self.first = i,
            c => {
                if let Some(prev) = self.entries.get_mut(c as usize) {
                    prev.next = i;
                }
            }
        }
        self.cursor = i;
        if let Some(e) = self.entries.get_mut(i as usize) {
            if e.seen != self.generation {
                e.seen = self.generation;
                self.met += 1;
            }
        }
    }

    /// The entry of series text `key`, made if there is none (with `facts()`), and noted as
    /// the current line ([`SeriesTexts::met`]).
    pub(super) fn find_or_insert(
        &mut self,
        key: &[u8],
        name_len: usize,
        brace: usize,
        facts: impl FnOnce() -> Facts,
    ) -> SeriesText {
        let hash = self.hasher.hash_one(key);
        let (entries, keys) = (&self.entries, &self.keys);
        let found = self.table.find(hash, |&i| {
            let e = &entries[i as usize];
            keys.get(e.start as usize..(e.start + e.len) as usize) == Some(key)
        });
        let text = match found {
            Some(&i) => SeriesText(i),
            None => self.insert(key, hash, name_len, brace, facts()),
        };
        self.met(text);
        text
    }

    fn insert(
        &mut self,
        key: &[u8],
        hash: u64,
        name_len: usize,
        brace: usize,
        facts: Facts,
    ) -> SeriesText {
        // Keys come from a body under 2 GiB (checked before parsing), so offsets fit u32
        // until the buffer is compacted, which it is long before it holds 2 GiB of dead keys.
        let start = self.keys.len() as u32;
        self.keys.extend_from_slice(key);
        let entry = Entry {
            start,
            len: key.len() as u32,
            hash,
            name_len: name_len as u32,
            brace: brace as u32,
            next: NONE,
            seen: self.generation.wrapping_sub(1),
            facts,
            tag: None,
            free: false,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.table
            .insert_unique(hash, i, |&j| entries[j as usize].hash);
        SeriesText(i)
    }

    fn drop_entry(&mut self, i: u32) {
        let e = &mut self.entries[i as usize];
        e.free = true;
        e.tag = None;
        self.dead_bytes += e.len as usize;
        if let Ok(found) = self.table.find_entry(e.hash, |&j| j == i) {
            found.remove();
        }
        self.free.push(i);
    }

    /// Rewrites `keys` with the live entries' keys only.
    fn compact(&mut self) {
        let mut keys = Vec::with_capacity(self.keys.len() - self.dead_bytes);
        for e in self.entries.iter_mut().filter(|e| !e.free) {
            let start = keys.len() as u32;
            keys.extend_from_slice(
                self.keys
                    .get(e.start as usize..(e.start + e.len) as usize)
                    .unwrap_or_default(),
            );
            e.start = start;
        }
        for e in self.entries.iter_mut().filter(|e| e.free) {
            e.start = 0;
            e.len = 0;
        }
        self.keys = keys;
        self.dead_bytes = 0;
    }

    fn key(&self, e: &Entry) -> &[u8] {
        self.keys
            .get(e.start as usize..(e.start + e.len) as usize)
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for SeriesTexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesTexts")
            .field("len", &self.len())
            .field("key_bytes", &self.keys.len())
            .finish()
    }
}
