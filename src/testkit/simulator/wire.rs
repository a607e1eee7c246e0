//! The `/stats/summary` document as the simulator writes it: serde shapes named and ordered
//! like the kubelet's Go types (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`), and times spelled as
//! Go's `metav1.Time` marshals them. It owns spelling only; `model` decides every value.
//!
//! These are not `kubelet::summary`'s types: those borrow from the input and take every field
//! as optional to tolerate any kubelet, while these write one fixed Windows shape, so sharing
//! them would make both worse.

use serde::Serialize;

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Formats Unix seconds like Go's `metav1.Time` marshals: RFC 3339, UTC, whole seconds
/// (`2026-11-25T10:00:07Z`). Public for the tests and benches that restamp a document.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[derive(Serialize)]
pub(super) struct Summary {
    pub(super) node: NodeStats,
    pub(super) pods: Vec<PodStats>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NodeStats {
    pub(super) node_name: String,
    pub(super) system_containers: Vec<ContainerStats>,
    pub(super) start_time: String,
    pub(super) cpu: Cpu,
    pub(super) memory: Memory,
    pub(super) network: Network,
    pub(super) fs: Fs,
    pub(super) runtime: Runtime,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerStats {
    pub(super) name: String,
    pub(super) start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cpu: Option<Cpu>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) memory: Option<Memory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rootfs: Option<Fs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) logs: Option<Fs>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Cpu {
    pub(super) time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage_core_nano_seconds: Option<u64>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Memory {
    pub(super) time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) major_page_faults: Option<u64>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Interface {
    pub(super) name: String,
    pub(super) rx_bytes: u64,
    pub(super) rx_errors: u64,
    pub(super) tx_bytes: u64,
    pub(super) tx_errors: u64,
}

#[derive(Serialize)]
pub(super) struct Network {
    pub(super) time: String,
    /// The Go type embeds the default interface inline.
    #[serde(flatten)]
    pub(super) default: Interface,
    pub(super) interfaces: Vec<Interface>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct Fs {
    pub(super) time: String,
    pub(super) available_bytes: u64,
    pub(super) capacity_bytes: u64,
    pub(super) used_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) inodes_used: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Runtime {
    pub(super) image_fs: Fs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodStats {
    pub(super) pod_ref: PodRef,
    pub(super) start_time: String,
    pub(super) containers: Vec<ContainerStats>,
    pub(super) cpu: Cpu,
    pub(super) memory: Memory,
    pub(super) network: Network,
    pub(super) volume: Vec<Volume>,
    #[serde(rename = "ephemeral-storage")]
    pub(super) ephemeral_storage: Fs,
}

#[derive(Serialize)]
pub(super) struct PodRef {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) uid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Volume {
    #[serde(flatten)]
    pub(super) fs: Fs,
    pub(super) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pvc_ref: Option<PvcRef>,
}

#[derive(Serialize)]
pub(super) struct PvcRef {
    pub(super) name: String,
    pub(super) namespace: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_600_807), "2026-11-25T10:00:07Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_round_trips_through_the_agents_parser() {
        for t in [0, 951_825_600, 1_536_543_892, 1_795_570_680, 4_102_444_800] {
            let s = rfc3339(t);
            assert_eq!(
                crate::kubelet::time::parse_rfc3339_ms(&s),
                Ok(t as i64 * 1000),
                "{s}"
            );
        }
        assert_eq!(rfc3339(1_536_543_892), "2018-09-10T01:44:52Z");
    }
}
