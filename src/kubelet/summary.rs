//! The kubelet Summary API document (`GET /stats/summary`), as serde types that borrow from the
//! response bytes.
//!
//! Field names follow the kubelet's Go types (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`).
//! Everything is optional and `null` is accepted everywhere, because real kubelets from 1.5 to
//! today leave out whole sections (Windows has no rlimit, old kubelets no `interfaces`, the
//! read-only port may send no node at all). A missing value stays `None` so the converter emits
//! no sample for it, never a zero. Numbers are read straight into `f64`: every value ends up as
//! a float64 sample anyway, and `u64::MAX` (seen on real filesystems) converts without error.
//! Unknown fields are ignored so newer kubelets keep working. This module does no I/O and knows
//! nothing about metric names.

use std::borrow::Cow;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::time::parse_rfc3339_ms;

/// Parses a summary document. The result borrows strings from `bytes` where it can.
pub fn parse(bytes: &[u8]) -> Result<Summary<'_>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// A measurement time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = Time;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                parse_rfc3339_ms(v).map(Time).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimeVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Summary<'a> {
    #[serde(borrow, default)]
    pub node: Option<NodeStats<'a>>,
    #[serde(borrow, default)]
    pub pods: Option<Vec<PodStats<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats<'a> {
    #[serde(borrow, default)]
    pub node_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub system_containers: Option<Vec<ContainerStats<'a>>>,
    #[serde(default)]
    pub start_time: Option<Time>,
    #[serde(default)]
    pub cpu: Option<CpuStats>,
    #[serde(default)]
    pub memory: Option<MemoryStats>,
    #[serde(default)]
    pub swap: Option<SwapStats>,
    #[serde(default)]
    pub io: Option<IoStats>,
    #[serde(borrow, default)]
    pub network: Option<NetworkStats<'a>>,
    #[serde(default)]
    pub fs: Option<FsStats>,
    #[serde(default)]
    pub runtime: Option<RuntimeStats>,
    #[serde(default)]
    pub rlimit: Option<RlimitStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(default)]
    pub image_fs: Option<FsStats>,
    #[serde(default)]
    pub container_fs: Option<FsStats>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RlimitStats {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub maxpid: Option<f64>,
    #[serde(default)]
    pub curproc: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats<'a> {
    #[serde(borrow, default)]
    pub pod_ref: Option<PodReference<'a>>,
    #[serde(default)]
    pub start_time: Option<Time>,
    #[serde(borrow, default)]
    pub containers: Option<Vec<ContainerStats<'a>>>,
    #[serde(default)]
    pub cpu: Option<CpuStats>,
    #[serde(default)]
    pub memory: Option<MemoryStats>,
    #[serde(default)]
    pub swap: Option<SwapStats>,
    #[serde(default)]
    pub io: Option<IoStats>,
    #[serde(borrow, default)]
    pub network: Option<NetworkStats<'a>>,
    #[serde(borrow, default, rename = "volume")]
    pub volumes: Option<Vec<VolumeStats<'a>>>,
    #[serde(default, rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<FsStats>,
    #[serde(default, rename = "process_stats")]
    pub process_stats: Option<ProcessStats>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodReference<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// Joins the pod to its `/pods` metadata (`kubelet::pods`).
    #[serde(borrow, default)]
    pub uid: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProcessStats {
    #[serde(default)]
    pub process_count: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub start_time: Option<Time>,
    #[serde(default)]
    pub cpu: Option<CpuStats>,
    #[serde(default)]
    pub memory: Option<MemoryStats>,
    #[serde(default)]
    pub swap: Option<SwapStats>,
    #[serde(default)]
    pub io: Option<IoStats>,
    #[serde(borrow, default)]
    pub accelerators: Option<Vec<AcceleratorStats<'a>>>,
    #[serde(default)]
    pub rootfs: Option<FsStats>,
    #[serde(default)]
    pub logs: Option<FsStats>,
}

/// Network stats. The kubelet inlines the default interface's counters next to `interfaces`;
/// kubelets before 1.7 send only those inline counters.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats<'a> {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub rx_bytes: Option<f64>,
    #[serde(default)]
    pub rx_errors: Option<f64>,
    #[serde(default)]
    pub tx_bytes: Option<f64>,
    #[serde(default)]
    pub tx_errors: Option<f64>,
    #[serde(borrow, default)]
    pub interfaces: Option<Vec<InterfaceStats<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub rx_bytes: Option<f64>,
    #[serde(default)]
    pub rx_errors: Option<f64>,
    #[serde(default)]
    pub tx_bytes: Option<f64>,
    #[serde(default)]
    pub tx_errors: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub usage_core_nano_seconds: Option<f64>,
    #[serde(default)]
    pub psi: Option<PsiStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub available_bytes: Option<f64>,
    #[serde(default)]
    pub usage_bytes: Option<f64>,
    #[serde(default)]
    pub working_set_bytes: Option<f64>,
    #[serde(default)]
    pub rss_bytes: Option<f64>,
    #[serde(default)]
    pub page_faults: Option<f64>,
    #[serde(default)]
    pub major_page_faults: Option<f64>,
    #[serde(default)]
    pub psi: Option<PsiStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwapStats {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub swap_available_bytes: Option<f64>,
    #[serde(default)]
    pub swap_usage_bytes: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IoStats {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub psi: Option<PsiStats>,
}

/// Pressure stall information; `total` is cumulative stall time in microseconds.
#[derive(Debug, Default, Deserialize)]
pub struct PsiStats {
    #[serde(default)]
    pub some: Option<PsiData>,
    #[serde(default)]
    pub full: Option<PsiData>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PsiData {
    #[serde(default)]
    pub total: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorStats<'a> {
    #[serde(borrow, default)]
    pub make: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub memory_total: Option<f64>,
    #[serde(default)]
    pub memory_used: Option<f64>,
    #[serde(default)]
    pub duty_cycle: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub available_bytes: Option<f64>,
    #[serde(default)]
    pub capacity_bytes: Option<f64>,
    #[serde(default)]
    pub used_bytes: Option<f64>,
    #[serde(default)]
    pub inodes_free: Option<f64>,
    #[serde(default)]
    pub inodes: Option<f64>,
    #[serde(default)]
    pub inodes_used: Option<f64>,
}

/// A pod volume: filesystem stats inlined next to its name and optional claim. The `FsStats`
/// fields are repeated rather than `#[serde(flatten)]`ed: flatten buffers every field into an
/// intermediate map (slow, and it cannot borrow strings), and this runs once per volume of
/// every pod on every poll.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats<'a> {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub available_bytes: Option<f64>,
    #[serde(default)]
    pub capacity_bytes: Option<f64>,
    #[serde(default)]
    pub used_bytes: Option<f64>,
    #[serde(default)]
    pub inodes_free: Option<f64>,
    #[serde(default)]
    pub inodes: Option<f64>,
    #[serde(default)]
    pub inodes_used: Option<f64>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub pvc_ref: Option<PvcReference<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PvcReference<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
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

    #[test]
    fn empty_object_is_an_empty_summary() {
        let s = parse(b"{}").unwrap();
        assert!(s.node.is_none() && s.pods.is_none());
    }

    #[test]
    fn broken_documents_say_where() {
        let err = parse(br#"{"node":{"nodeName":"n","#).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse(br#"{"node":{"startTime":"yesterday"}}"#).unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
        assert!(parse(br#"{"node":{"cpu":{"usageCoreNanoSeconds":"12"}}}"#).is_err());
    }

    #[test]
    fn escaped_names_are_decoded() {
        let s = parse(br#"{"node":{"nodeName":"a\u00e9b"}}"#).unwrap();
        assert_eq!(s.node.unwrap().node_name.as_deref(), Some("a\u{e9}b"));
    }
}
