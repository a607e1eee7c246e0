//! The kubelet Summary API document (`GET /stats/summary`), as serde types that borrow from the
//! response bytes.
//!
//! Field names follow the kubelet's Go types (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`).
//! Everything is optional and `null` is accepted everywhere, because real kubelets from 1.5 to
//! today leave out whole sections (Windows has no rlimit, old kubelets no `interfaces`, the
//! read-only port may send no node at all). A missing value stays `None` so the converter emits
//! no sample for it, never a zero. Numbers are read into `f64`: every value ends up as a
//! float64 sample anyway, and `u64::MAX` (seen on real filesystems) converts without error.
//! Unknown fields are ignored so newer kubelets keep working.
//!
//! Tolerance is per value ([`lenient`]): a value of the wrong type (a string where a number
//! belongs, a number where a section belongs), a number past the float64 range or a `time`
//! that is not RFC 3339 becomes `None` and is counted in [`Summary::invalid`]; the rest of the
//! document is kept. What still fails the whole document: broken JSON syntax, a top level that
//! is not an object, nesting deeper than serde_json's limit (128), and a key repeated inside one
//! known section (serde's derive refuses duplicate fields; the Go kubelet never writes one).
//!
//! This module does no I/O and knows nothing about metric names; judging values against each
//! other or a clock (negative counters, times in the future) is the converter's job.

use std::borrow::Cow;

use serde::Deserialize;

/// Parses a summary document. The result borrows strings from `bytes` where it can.
pub fn parse(bytes: &[u8]) -> Result<Summary<'_>, serde_json::Error> {
    // serde's derive would take a top-level array as a struct written as a sequence, and `[]`
    // as a healthy summary with nothing in it.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => {}
        Some(other) => {
            let found = match other {
                b'[' => "an array",
                b'"' => "a string",
                b'n' => "null",
                b't' | b'f' => "a boolean",
                b'-' | b'0'..=b'9' => "a number",
                _ => "something else",
            };
            return Err(serde::de::Error::custom(format_args!(
                "the summary must be a JSON object, found {found}"
            )));
        }
    }
    lenient::reset();
    // A document that is UTF-8 throughout (every kubelet's) is checked once here and read as
    // a `str`, so serde_json does not check each string again as it reads it (6 % of a
    // poll's instructions: docs/performance.md, issue 24). Anything else is read as bytes, as
    // before: a bad byte inside a string nobody reads still fails nothing.
    let parsed = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<Summary<'_>>(text),
        Err(_) => serde_json::from_slice::<Summary<'_>>(bytes),
    };
    let invalid = lenient::take();
    parsed.map(|mut summary| {
        summary.invalid = invalid;
        summary
    })
}

/// A measurement time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub i64);

/// Values of a summary that could not be read and were left out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// How many (a section of the wrong type counts once, not once per value it held).
    pub count: usize,
    /// What the first one was, for the log line.
    pub first: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Summary<'a> {
    /// Filled by [`parse`], never read from the document.
    #[serde(skip)]
    pub invalid: Invalid,
    #[serde(borrow, default, deserialize_with = "lenient::section")]
    pub node: Option<NodeStats<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::list")]
    pub pods: Option<Vec<PodStats<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub node_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::list")]
    pub system_containers: Option<Vec<ContainerStats<'a>>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub start_time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub cpu: Option<CpuStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub memory: Option<MemoryStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub swap: Option<SwapStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub io: Option<IoStats>,
    #[serde(borrow, default, deserialize_with = "lenient::section")]
    pub network: Option<NetworkStats<'a>>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub fs: Option<FsStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub runtime: Option<RuntimeStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub rlimit: Option<RlimitStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(default, deserialize_with = "lenient::section")]
    pub image_fs: Option<FsStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub container_fs: Option<FsStats>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RlimitStats {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub maxpid: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub curproc: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::section")]
    pub pod_ref: Option<PodReference<'a>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub start_time: Option<Time>,
    #[serde(borrow, default, deserialize_with = "lenient::list")]
    pub containers: Option<Vec<ContainerStats<'a>>>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub cpu: Option<CpuStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub memory: Option<MemoryStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub swap: Option<SwapStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub io: Option<IoStats>,
    #[serde(borrow, default, deserialize_with = "lenient::section")]
    pub network: Option<NetworkStats<'a>>,
    #[serde(borrow, default, deserialize_with = "lenient::list", rename = "volume")]
    pub volumes: Option<Vec<VolumeStats<'a>>>,
    #[serde(
        default,
        deserialize_with = "lenient::section",
        rename = "ephemeral-storage"
    )]
    pub ephemeral_storage: Option<FsStats>,
    #[serde(
        default,
        deserialize_with = "lenient::section",
        rename = "process_stats"
    )]
    pub process_stats: Option<ProcessStats>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodReference<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub namespace: Option<Cow<'a, str>>,
    /// Joins the pod to its `/pods` metadata (`kubelet::pods`).
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub uid: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProcessStats {
    #[serde(default, deserialize_with = "lenient::number")]
    pub process_count: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::time")]
    pub start_time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub cpu: Option<CpuStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub memory: Option<MemoryStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub swap: Option<SwapStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub io: Option<IoStats>,
    #[serde(borrow, default, deserialize_with = "lenient::list")]
    pub accelerators: Option<Vec<AcceleratorStats<'a>>>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub rootfs: Option<FsStats>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub logs: Option<FsStats>,
}

/// Network stats. The kubelet inlines the default interface's counters next to `interfaces`;
/// kubelets before 1.7 send only those inline counters.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats<'a> {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub rx_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub rx_errors: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub tx_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub tx_errors: Option<f64>,
    #[serde(borrow, default, deserialize_with = "lenient::list")]
    pub interfaces: Option<Vec<InterfaceStats<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub rx_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub rx_errors: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub tx_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub tx_errors: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub usage_core_nano_seconds: Option<f64>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub psi: Option<PsiStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub available_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub usage_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub working_set_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub rss_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub page_faults: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub major_page_faults: Option<f64>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub psi: Option<PsiStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapStats {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub swap_available_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub swap_usage_bytes: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IoStats {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub psi: Option<PsiStats>,
}

/// Pressure stall information; `total` is cumulative stall time in microseconds.
#[derive(Debug, Default, Deserialize)]
pub struct PsiStats {
    #[serde(default, deserialize_with = "lenient::section")]
    pub some: Option<PsiData>,
    #[serde(default, deserialize_with = "lenient::section")]
    pub full: Option<PsiData>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PsiData {
    #[serde(default, deserialize_with = "lenient::number")]
    pub total: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorStats<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub make: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub memory_total: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub memory_used: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub duty_cycle: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub available_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub capacity_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub used_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub inodes_free: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub inodes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub inodes_used: Option<f64>,
}

/// A pod volume: filesystem stats inlined next to its name and optional claim. The `FsStats`
/// fields are repeated rather than `#[serde(flatten)]`ed: flatten buffers every field into an
/// intermediate map (slow, and it cannot borrow strings), and this runs once per volume of
/// every pod on every poll.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats<'a> {
    #[serde(default, deserialize_with = "lenient::time")]
    pub time: Option<Time>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub available_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub capacity_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub used_bytes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub inodes_free: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub inodes: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    pub inodes_used: Option<f64>,
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::section")]
    pub pvc_ref: Option<PvcReference<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PvcReference<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::text")]
    pub namespace: Option<Cow<'a, str>>,
}

/// Deserializers that turn a value of the wrong shape into `None` and count it, instead of
/// failing the document. The count is thread-local because serde gives a `Deserialize` impl no
/// context to write to; [`parse`] resets it before and takes it after, on the same thread, and
/// nothing else deserializes these types.
pub mod lenient {
    use std::borrow::Cow;
    use std::cell::Cell;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    use super::{Invalid, Time};
    use crate::kubelet::time::parse_rfc3339_ms;

    thread_local! {
        static FOUND: Cell<Invalid> = const { Cell::new(Invalid { count: 0, first: None }) };
    }

    thread_local! {
        static LAST_TIME: Cell<LastTime> = const { Cell::new(LastTime::EMPTY) };
    }

    /// The last time string read and its value: a summary repeats a few `time`s hundreds of
    /// times (every section the kubelet refreshed together), so most are a comparison.
    #[derive(Clone, Copy)]
    struct LastTime {
        text: [u8; 32],
        len: u8,
        ms: i64,
    }

    impl LastTime {
        const EMPTY: LastTime = LastTime {
            text: [0; 32],
            len: 0,
            ms: 0,
        };

        /// Remembers `text` (when short enough; otherwise nothing).
        fn new(text: &str, ms: i64) -> LastTime {
            let mut last = LastTime::EMPTY;
            if let (Some(slot), Ok(len)) =
                (last.text.get_mut(..text.len()), u8::try_from(text.len()))
            {
                slot.copy_from_slice(text.as_bytes());
                last.len = len;
                last.ms = ms;
            }
            last
        }

        fn read(&self, text: &str) -> Option<i64> {
            let len = usize::from(self.len);
            (len > 0 && self.text.get(..len) == Some(text.as_bytes())).then_some(self.ms)
        }
    }

    pub(super) fn reset() {
        FOUND.with(|f| f.set(Invalid::default()));
    }

    pub(super) fn take() -> Invalid {
        FOUND.with(|f| f.replace(Invalid::default()))
    }

    fn note(what: &'static str) {
        FOUND.with(|f| {
            let mut found = f.get();
            found.count += 1;
            found.first = found.first.or(Some(what));
            f.set(found);
        });
    }

    /// The visitor methods for booleans and numbers, each noting `$what`.
    macro_rules! numbers {
        ($what:expr) => {
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                note($what);
                Ok(None)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                note($what);
                Ok(None)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                note($what);
                Ok(None)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                note($what);
                Ok(None)
            }
        };
    }

    /// The `numbers!` methods and strings: for a place that wants an object or an array.
    macro_rules! scalars {
        ($what:expr) => {
            numbers!($what);
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                note($what);
                Ok(None)
            }
        };
    }

    /// The `numbers!` methods, objects and arrays (consumed, so parsing goes on): for a place
    /// that wants a string.
    macro_rules! other_types {
        ($what:expr) => {
            numbers!($what);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                note($what);
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                note($what);
                Ok(None)
            }
        };
    }

    /// A number. Read as the raw token and parsed here, since serde_json fails the whole
    /// document on a number past the float64 range (`1e400`) instead of handing it over.
    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if let Some(v) = integer(text) {
            return Ok(Some(v));
        }
        match text.as_bytes().first() {
            Some(b'-' | b'0'..=b'9') => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => {
                    note("a number beyond the float64 range");
                    Ok(None)
                }
            },
            Some(b'n') => Ok(None),
            Some(b'"') => {
                note("a string where a number belongs");
                Ok(None)
            }
            _ => {
                note("a boolean, object or array where a number belongs");
                Ok(None)
            }
        }
    }

    /// A JSON integer of at most 19 digits (almost every summary value: bytes, nanoseconds,
    /// counts), converted without the general float parser: the `u64` it fits in converts to
    /// the nearest `f64`, ties to even, which is what parsing the decimal text gives.
    #[inline]
    pub(super) fn integer(text: &str) -> Option<f64> {
        let (negative, digits) = match text.as_bytes() {
            [b'-', rest @ ..] => (true, rest),
            all => (false, all),
        };
        if digits.is_empty() || digits.len() > 19 {
            return None;
        }
        let mut n = 0u64;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u64::from(d - b'0');
        }
        let v = n as f64;
        Some(if negative { -v } else { v })
    }

    /// An RFC 3339 time string.
    pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Time>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if let Some(ms) = LAST_TIME.with(|last| last.get().read(v)) {
                    return Ok(Some(Time(ms)));
                }
                match parse_rfc3339_ms(v) {
                    Ok(ms) => {
                        LAST_TIME.with(|last| last.set(LastTime::new(v, ms)));
                        Ok(Some(Time(ms)))
                    }
                    Err(_) => {
                        note("a time that is not RFC 3339");
                        Ok(None)
                    }
                }
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            other_types!("a time that is not a string");
        }
        d.deserialize_any(V)
    }

    /// A name: borrowed from the document unless it holds escapes.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Cow<'de, str>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            other_types!("a name that is not a string");
        }
        d.deserialize_any(V)
    }

    /// A section (an object): anything else leaves the section out.
    pub fn section<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Some)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                note("an array where a section belongs");
                Ok(None)
            }
            scalars!("a value where a section belongs");
        }
        d.deserialize_any(V(PhantomData))
    }

    /// A list of sections: an element that is not an object is left out, the others kept.
    pub fn list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct Element<T>(Option<T>);
        impl<'de, T: Deserialize<'de>> Deserialize<'de> for Element<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                section(d).map(Element)
            }
        }
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Option<Vec<T>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // No capacity from a size hint: the document's own claims size nothing.
                let mut out = Vec::new();
                while let Some(Element(item)) = seq.next_element::<Element<T>>()? {
                    out.extend(item);
                }
                Ok(Some(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                note("an object where a list belongs");
                Ok(None)
            }
            scalars!("a value where a list belongs");
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_nulls_missing_sections_and_unknown_fields() {
        let doc = br#"{"node":{"nodeName":"n","cpu":null,"futureField":{"x":1},
            "fs":{"time":"2020-01-01T00:00:00Z","inodesFree":18446744073709551615}},
            "pods":null}"#;
        let s = parse(doc).unwrap();
        let node = s.node.unwrap();
        assert_eq!(node.node_name.as_deref(), Some("n"));
        assert!(node.cpu.is_none());
        let fs = node.fs.unwrap();
        assert_eq!(fs.inodes_free, Some(18446744073709551615.0));
        assert_eq!(fs.time, Some(Time(1_577_836_800_000)));
        assert!(fs.used_bytes.is_none());
        assert!(s.pods.is_none());
    }

    /// The UTF-8 check before the parse changes nothing: a byte that is not UTF-8 inside a
    /// string no field reads is still ignored, one inside a name still fails the document,
    /// and an escaped name is still read (owned).
    #[test]
    fn bytes_that_are_not_utf8_are_judged_as_before() {
        let doc = b"{\"node\":{\"nodeName\":\"n\",\"futureField\":\"\xff\"},\"pods\":[]}";
        let s = parse(doc).unwrap();
        assert_eq!(s.node.unwrap().node_name.as_deref(), Some("n"));
        assert_eq!(s.pods.map(|p| p.len()), Some(0));
        let err = parse(b"{\"node\":{\"nodeName\":\"\xffn\"}}").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let s = parse(br#"{"node":{"nodeName":"a\u00e9b"}}"#).unwrap();
        assert_eq!(s.node.unwrap().node_name.as_deref(), Some("a\u{e9}b"));
    }

    /// Times repeated, alternating and of every length each read as themselves (the last
    /// one read is remembered).
    #[test]
    fn repeated_times_read_as_themselves() {
        let doc = br#"{"node":{
            "cpu":{"time":"2020-01-01T00:00:01Z"},
            "memory":{"time":"2020-01-01T00:00:02Z"},
            "fs":{"time":"2020-01-01T00:00:01Z"},
            "network":{"time":"2020-01-01T00:00:01.123456789+00:00"},
            "swap":{"time":"2020-01-01T00:00:01.123456789+00:00 "},
            "io":{"time":"2020-01-01T00:00:01.1234567891234567891234567+00:00"},
            "rlimit":{"time":"2020-01-01T00:00:01.1234567891234567891234567+00:00"}}}"#;
        let node = parse(doc).unwrap().node.unwrap();
        assert_eq!(node.cpu.unwrap().time, Some(Time(1_577_836_801_000)));
        assert_eq!(node.memory.unwrap().time, Some(Time(1_577_836_802_000)));
        assert_eq!(node.fs.unwrap().time, Some(Time(1_577_836_801_000)));
        assert_eq!(node.network.unwrap().time, Some(Time(1_577_836_801_123)));
        assert_eq!(node.swap.unwrap().time, None);
        assert_eq!(node.io.unwrap().time, Some(Time(1_577_836_801_123)));
        assert_eq!(node.rlimit.unwrap().time, Some(Time(1_577_836_801_123)));
    }

    /// The integer path gives exactly what the float parser gives, rounding included.
    #[test]
    fn integers_convert_as_the_float_parser_reads_them() {
        let mut rng = crate::rng::SplitMix64::new(24);
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "1",
            "9007199254740993",
            "18014398509481985",
            "9999999999999999999",
            "-9999999999999999999",
            "18446744073709551615",
            "12345678901234567890123",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let v = rng.next_u64() >> (rng.next_u64() % 64);
            texts.push(v.to_string());
            texts.push(format!("-{v}"));
        }
        for text in &texts {
            let parsed: f64 = text.parse().unwrap();
            match lenient::integer(text) {
                Some(v) => assert_eq!(v.to_bits(), parsed.to_bits(), "{text}"),
                None => assert!(text.trim_start_matches('-').len() > 19, "{text}"),
            }
        }
        for text in ["1.5", "1e3", "-", "", "1-2"] {
            assert_eq!(lenient::integer(text), None, "{text}");
        }
    }

    #[test]
    fn empty_object_is_an_empty_summary() {
        let s = parse(b"{}").unwrap();
        assert!(s.node.is_none() && s.pods.is_none());
    }

    #[test]
    fn broken_documents_say_where() {
        let err = parse(br#"{"node":{"nodeName":"n","#).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse(br#"{"node":{"cpu":{},"cpu":{}}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate field `cpu`"), "{err}");
    }

    #[test]
    fn a_top_level_that_is_not_an_object_is_an_error() {
        for (doc, found) in [
            (&b"[]"[..], "an array"),
            (b" null", "null"),
            (b"12", "a number"),
            (b"\"x\"", "a string"),
            (b"true", "a boolean"),
        ] {
            let err = parse(doc).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("the summary must be a JSON object, found {found}")
            );
        }
        assert!(parse(b"").is_err(), "an empty body is still broken JSON");
    }

    /// Each bad value is left out and counted; every good value beside it is kept.
    #[test]
    fn a_bad_value_costs_only_itself() {
        let doc = br#"{"node":{"nodeName":"n","startTime":"yesterday",
            "cpu":{"time":"2020-01-01T00:00:00Z","usageCoreNanoSeconds":"12"},
            "memory":{"time":"not a time","usageBytes":1e400,"workingSetBytes":7,"rssBytes":-1e400,
                      "availableBytes":true,"pageFaults":[1],"majorPageFaults":{"a":[{}]}},
            "fs":[1,2],"swap":5,"network":{"name":3,"rxBytes":4,"interfaces":{"eth0":{}}},
            "systemContainers":[7,{"name":"kubelet","cpu":{"usageCoreNanoSeconds":9}},"x"]},
            "pods":[null,{"podRef":{"name":"p"},"volume":"v","containers":[{"name":"c","rootfs":{"usedBytes":2}}]}]}"#;
        let s = parse(doc).unwrap();
        let node = s.node.as_ref().unwrap();
        assert_eq!(node.node_name.as_deref(), Some("n"));
        assert_eq!(node.start_time, None);
        let cpu = node.cpu.as_ref().unwrap();
        assert_eq!(cpu.time, Some(Time(1_577_836_800_000)));
        assert_eq!(cpu.usage_core_nano_seconds, None);
        let m = node.memory.as_ref().unwrap();
        assert_eq!(
            (m.time, m.usage_bytes, m.working_set_bytes),
            (None, None, Some(7.0))
        );
        assert_eq!((m.rss_bytes, m.available_bytes), (None, None));
        assert_eq!((m.page_faults, m.major_page_faults), (None, None));
        assert!(node.fs.is_none() && node.swap.is_none());
        let net = node.network.as_ref().unwrap();
        assert_eq!((net.name.as_deref(), net.rx_bytes), (None, Some(4.0)));
        assert!(net.interfaces.is_none());
        let sc = node.system_containers.as_ref().unwrap();
        assert_eq!(sc.len(), 1);
        assert_eq!(
            sc[0].cpu.as_ref().unwrap().usage_core_nano_seconds,
            Some(9.0)
        );
        let pods = s.pods.as_ref().unwrap();
        assert_eq!(pods.len(), 1, "null is no pod, and no invalid value either");
        assert!(pods[0].volumes.is_none());
        let c = &pods[0].containers.as_ref().unwrap()[0];
        assert_eq!(c.rootfs.as_ref().unwrap().used_bytes, Some(2.0));
        // startTime, usageCoreNanoSeconds, time, usageBytes, rssBytes, availableBytes,
        // pageFaults, majorPageFaults, fs, swap, name, interfaces, 7, "x", volume.
        assert_eq!(s.invalid.count, 15);
        assert_eq!(s.invalid.first, Some("a time that is not RFC 3339"));
        assert_eq!(
            parse(br#"{"node":{}}"#).unwrap().invalid,
            Invalid::default()
        );
    }

    #[test]
    fn numbers_read_as_tokens_match_serde_json() {
        for text in [
            "0",
            "-0",
            "1",
            "18446744073709551615",
            "1e308",
            "1.7976931348623157e308",
            "123456789.123456789",
            "0.1",
            "5e-324",
            "-42.5e3",
            "1E2",
            "100000000000000000000000",
        ] {
            let doc = format!(r#"{{"node":{{"fs":{{"usedBytes":{text}}}}}}}"#);
            let got = parse(doc.as_bytes())
                .unwrap()
                .node
                .unwrap()
                .fs
                .unwrap()
                .used_bytes;
            let want: f64 = serde_json::from_str(text).unwrap();
            assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{text}");
        }
    }

    #[test]
    fn escaped_names_are_decoded() {
        let s = parse(br#"{"node":{"nodeName":"a\u00e9b"}}"#).unwrap();
        assert_eq!(s.node.unwrap().node_name.as_deref(), Some("a\u{e9}b"));
    }
}
