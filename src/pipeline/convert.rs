//! Summary → samples: every metric of METRICS.md, with its labels, units and timestamps.
//!
//! Pure: no I/O, no clock. The caller passes the poll time (used only when the summary carries
//! no `time` at all), `--max-stats-age`, the horizon (the latest believable time, from its own
//! clock) and a [`Context`]: the pod metadata of `/pods`, when there is any, and the pod labels
//! to copy. Samples borrow from the summary and the context and are handed to a sink one at a
//! time, so converting allocates nothing.
//!
//! Labels from outside the summary (docs/metrics.md has the table):
//! - `metrics_path` says which kubelet endpoint a kube-prometheus scrape would have found the
//!   family at, so the queries of its dashboards, rules and prometheus-adapter find ours:
//!   `/metrics/cadvisor` for cAdvisor's names, `/metrics/resource` for the families only the
//!   resource endpoint has, `/metrics` for `kubelet_volume_stats_*`. Our own families carry
//!   none. A value both endpoints serve is sent once, under cAdvisor's.
//! - `image` and `name` (the runtime's container id) on a container's series, from `/pods`,
//!   when an answer taken after the container started describes it; otherwise the container
//!   is counted in [`Converted::undescribed`] and the caller asks `/pods` again.
//! - `label_<name>` for each `--pod-label` the pod has, on the pod's and its containers'
//!   series.
//!
//! Not here: the common labels (`job`, `instance`, `node`, `--label`) are added by the encoder,
//! duplicate label sets and repeated timestamps are filtered by `series`, and the per-poll
//! `up` / `scrape_*` series are made by the pipeline (`super`).
//!
//! Timestamp rule (DESIGN.md "Samples"): a sample carries its section's `time` when that is
//! within `max_stats_age` of the reference, the newest `time` in the summary that is not past
//! the horizon; otherwise, and for values with no section time (start times, process counts,
//! accelerators), it carries the reference. Real kubelets report volume stats hours old and the
//! Windows kubelet has stamped pod CPU with the container's start time; receivers reject such
//! samples and, in Prometheus's case, the whole request with them.
//!
//! Times from the future: the horizon is the agent's clock plus [`FUTURE_ALLOWANCE_MS`]. A
//! section stamped past it (a kubelet clock that jumped ahead, a section saying year 9999)
//! never becomes the reference, so it cannot drag the rest of the summary forward; its samples
//! keep their own (future) time and the series tracker refuses them (`series::Admit::Future`):
//! they are dropped and counted, never sent, never remembered. When every section is past the
//! horizon, the values without a time of their own carry the newest of those times too, and go
//! the same way. [`Converted::ahead_ms`] says by how much, for the log line.
//!
//! Values: a counter below zero (CPU seconds, bytes, faults, pressure) cannot be a counter's
//! value; it is dropped and counted in [`Converted::negative_counters`]. Values the summary
//! model could not read at all never reach here (`kubelet::summary`'s lenient parsing).

use crate::kubelet::pods::{Coverage, PodInfo, PodMetadata};
use crate::kubelet::summary::{
    ContainerStats, CpuStats, FsStats, IoStats, MemoryStats, NetworkStats, PodStats, PsiStats,
    Summary, Time, VolumeStats,
};
use crate::series::FamilyLabel;

/// The most `--pod-label` flags: with them a sample has at most `MAX_LABELS` labels.
pub const MAX_POD_LABELS: usize = 10;

/// The most metric-specific labels a sample may have besides its family label: an accelerator
/// series has eight (namespace, pod, container, image, name, make, model, acc_id), plus one
/// per `--pod-label`.
pub const MAX_LABELS: usize = 8 + MAX_POD_LABELS;

/// The kubelet endpoints whose names we use, as kube-prometheus labels their scrapes: a
/// family label (see `series`), since the metric name decides it.
pub static CADVISOR: (&str, &str) = ("metrics_path", "/metrics/cadvisor");
pub static RESOURCE: (&str, &str) = ("metrics_path", "/metrics/resource");
pub static KUBELET_METRICS: (&str, &str) = ("metrics_path", "/metrics");

/// The per-poll series' `metrics_path` when the kubelet's own `/metrics` is scraped as well
/// (`--kubelet-scrape /metrics`), so the two `up` series stay apart.
pub static SUMMARY_METRICS: (&str, &str) = ("metrics_path", "/stats/summary");

/// How far past the agent's clock a summary `time` may be and still be believed. The kubelet
/// runs on the agent's node and reads the same clock, so real skew is milliseconds; a little
/// room keeps a remote kubelet with a slightly fast clock working. It also bounds the stall
/// after a kubelet clock that ran ahead by less than this is put back: its series wait until
/// the clock passes the last time sent, at most this long.
pub const FUTURE_ALLOWANCE_MS: i64 = 120_000;

/// What the converter takes from outside the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'m> {
    /// The last `/pods` answer; `None` when `/pods` is off or never answered.
    pub pods: Option<&'m PodMetadata>,
    /// `--pod-label`: the pod label and the metric label it becomes (`label_<sanitized>`).
    pub pod_labels: &'m [(String, String)],
}

/// What a conversion found besides its samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Converted {
    /// The newest section time not past the horizon, the reference of the timestamp rule;
    /// `None` when the summary has no such time, and then every sample carried the poll time
    /// (or, when it had only times from the future, the newest of those).
    pub newest: Option<i64>,
    /// The newest section time past the horizon, when there is one.
    pub ahead_ms: Option<i64>,
    /// Counter values below zero, left out.
    pub negative_counters: usize,
    /// Pods and containers the context's metadata could not describe for certain (a pod it
    /// lacks, a container it lacks or that started after or just before the answer): a reason
    /// to ask `/pods` again. Always 0 without metadata.
    pub undescribed: usize,
}

/// A metric's own labels, in the order they were added. A fixed array keeps building them free
/// of heap allocations; names may be dynamic (any `&str` that outlives the summary).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Labels<'s> {
    family: FamilyLabel,
    pairs: [(&'s str, &'s str); MAX_LABELS],
    len: u8,
}

impl<'s> Labels<'s> {
    pub fn new() -> Self {
        Labels {
            family: None,
            pairs: [("", ""); MAX_LABELS],
            len: 0,
        }
    }

    /// The same labels, for a family whose series all carry `family` (`metrics_path`).
    #[must_use]
    pub fn in_family(mut self, family: &'static (&'static str, &'static str)) -> Self {
        self.family = Some(family);
        self
    }

    /// Adds a label. Panics past `MAX_LABELS`, which only a change to this module can cause.
    #[must_use]
    pub fn with(mut self, name: &'s str, value: &'s str) -> Self {
        self.pairs[usize::from(self.len)] = (name, value);
        self.len += 1;
        self
    }

    /// Replaces the value of the label added last: a loop over interfaces reuses one copy
    /// instead of copying all the labels for each.
    fn set_last_value(&mut self, value: &'s str) {
        if let Some(i) = usize::from(self.len).checked_sub(1) {
            self.pairs[i].1 = value;
        }
    }

    pub fn as_slice(&self) -> &[(&'s str, &'s str)] {
        &self.pairs[..usize::from(self.len)]
    }
}

impl Default for Labels<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// One value of one series, before the common labels are added. Borrowed from the summary and
/// from the converter's stack: a sink that keeps anything must copy it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'static str,
    /// The label the name decides (`metrics_path`), if any.
    pub family: FamilyLabel,
    pub labels: &'a [(&'a str, &'a str)],
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// When the counter started counting (milliseconds since the Unix epoch), where the
    /// summary knows it: the `startTime` of the container, pod or node it counts for. 0 when
    /// unknown, for gauges, and when it is not before `timestamp_ms` (see [`start_ms`]).
    pub start_ms: i64,
}

/// The start timestamp a counter sample carries: `start`, when it is before the sample's
/// timestamp; 0 (unknown) otherwise. Receivers of Remote Write 2.0 may write a zero at the
/// start time (Prometheus's and Mimir's "created timestamp zero ingestion"): one at the
/// sample's own timestamp would collide with the sample, and the Windows kubelet has stamped
/// CPU with the container's start time.
pub fn start_ms(start: Option<Time>, timestamp_ms: i64) -> i64 {
    match start {
        Some(Time(s)) if s > 0 && s < timestamp_ms => s,
        _ => 0,
    }
}

/// The newest `time` of any section in the summary.
pub fn newest_time(summary: &Summary<'_>) -> Option<i64> {
    // No time is past an infinite horizon.
    newest_times(summary, i64::MAX).0
}

/// The newest section `time` not past `horizon_ms` (the reference for the timestamp rule) and
/// the newest past it.
fn newest_times(summary: &Summary<'_>, horizon_ms: i64) -> (Option<i64>, Option<i64>) {
    let mut newest: Option<Time> = None;
    let mut ahead: Option<Time> = None;
    let mut see = |t: Option<Time>| {
        let slot = match t {
            Some(Time(ms)) if ms > horizon_ms => &mut ahead,
            _ => &mut newest,
        };
        if t > *slot {
            *slot = t;
        }
    };
    let see_container = |c: &ContainerStats<'_>, see: &mut dyn FnMut(Option<Time>)| {
        see(c.cpu.as_ref().and_then(|x| x.time));
        see(c.memory.as_ref().and_then(|x| x.time));
        see(c.swap.as_ref().and_then(|x| x.time));
        see(c.io.as_ref().and_then(|x| x.time));
        see(c.rootfs.as_ref().and_then(|x| x.time));
        see(c.logs.as_ref().and_then(|x| x.time));
    };
    if let Some(node) = &summary.node {
        see(node.cpu.as_ref().and_then(|x| x.time));
        see(node.memory.as_ref().and_then(|x| x.time));
        see(node.swap.as_ref().and_then(|x| x.time));
        see(node.io.as_ref().and_then(|x| x.time));
        see(node.network.as_ref().and_then(|x| x.time));
        see(node.fs.as_ref().and_then(|x| x.time));
        see(node.rlimit.as_ref().and_then(|x| x.time));
        if let Some(rt) = &node.runtime {
            see(rt.image_fs.as_ref().and_then(|x| x.time));
            see(rt.container_fs.as_ref().and_then(|x| x.time));
        }
        for c in node.system_containers.iter().flatten() {
            see_container(c, &mut see);
        }
    }
    for pod in summary.pods.iter().flatten() {
        see(pod.cpu.as_ref().and_then(|x| x.time));
        see(pod.memory.as_ref().and_then(|x| x.time));
        see(pod.swap.as_ref().and_then(|x| x.time));
        see(pod.io.as_ref().and_then(|x| x.time));
        see(pod.network.as_ref().and_then(|x| x.time));
        see(pod.ephemeral_storage.as_ref().and_then(|x| x.time));
        for v in pod.volumes.iter().flatten() {
            see(v.time);
        }
        for c in pod.containers.iter().flatten() {
            see_container(c, &mut see);
        }
    }
    (newest.map(|t| t.0), ahead.map(|t| t.0))
}

/// [`convert_until`] with no horizon: every `time` in the summary is believed. For captured
/// summaries, whose times mean nothing against today's clock.
pub fn convert<F: FnMut(&Sample<'_>)>(
    summary: &Summary<'_>,
    context: Context<'_>,
    poll_time_ms: i64,
    max_stats_age_ms: i64,
    sink: &mut F,
) -> Converted {
    convert_until(
        summary,
        context,
        poll_time_ms,
        max_stats_age_ms,
        i64::MAX,
        sink,
    )
}

/// Converts `summary` into samples handed to `sink` one by one, in a fixed order (node, then
/// each pod with its volumes and containers). `horizon_ms` is the latest believable time (the
/// module doc says what happens past it).
pub fn convert_until<F: FnMut(&Sample<'_>)>(
    summary: &Summary<'_>,
    context: Context<'_>,
    poll_time_ms: i64,
    max_stats_age_ms: i64,
    horizon_ms: i64,
    sink: &mut F,
) -> Converted {
    let (newest, ahead_ms) = newest_times(summary, horizon_ms);
    let reference = newest.or(ahead_ms).unwrap_or(poll_time_ms);
    let mut e = Emitter {
        sink,
        reference,
        horizon: horizon_ms,
        max_age: max_stats_age_ms,
        context,
        undescribed: 0,
        negative_counters: 0,
        start: None,
    };
    if let Some(node) = &summary.node {
        // Node counters (CPU, page faults, network, pressure) count since the node started.
        e.start = node.start_time;
        let l = &Labels::new();
        let res = &l.in_family(&RESOURCE);
        e.cpu(Level::Node, res, l, node.cpu.as_ref());
        if let Some(m) = &node.memory {
            let t = m.time;
            e.push("node_memory_working_set_bytes", res, m.working_set_bytes, t);
            e.push("node_memory_usage_bytes", l, m.usage_bytes, t);
            e.push("node_memory_available_bytes", l, m.available_bytes, t);
            e.push("node_memory_rss_bytes", l, m.rss_bytes, t);
            e.counter("node_memory_page_faults_total", l, m.page_faults, t);
            e.counter(
                "node_memory_major_page_faults_total",
                l,
                m.major_page_faults,
                t,
            );
            e.psi(&PSI_NAMES[Level::Node as usize][1], l, m.psi.as_ref(), t);
        }
        if let Some(s) = &node.swap {
            e.push("node_swap_usage_bytes", res, s.swap_usage_bytes, s.time);
            e.push(
                "node_swap_available_bytes",
                l,
                s.swap_available_bytes,
                s.time,
            );
        }
        e.io(Level::Node, l, node.io.as_ref());
        e.fs(&NODE_FS, l, node.fs.as_ref());
        if let Some(rt) = &node.runtime {
            e.fs(&NODE_IMAGEFS, l, rt.image_fs.as_ref());
            e.fs(&NODE_CONTAINERFS, l, rt.container_fs.as_ref());
        }
        e.network(&NODE_NET, l, node.network.as_ref());
        if let Some(r) = &node.rlimit {
            e.push("node_processes", l, r.curproc, r.time);
            e.push("node_processes_limit", l, r.maxpid, r.time);
        }
        e.push("node_start_time_seconds", l, seconds(node.start_time), None);
        for sc in node.system_containers.iter().flatten() {
            let Some(name) = sc.name.as_deref() else {
                continue;
            };
            let l = &Labels::new().with("system_container", name);
            if let Some(c) = &sc.cpu {
                let v = c.usage_core_nano_seconds.map(|v| v / 1e9);
                // A system container (the kubelet, the runtime) counts since it started.
                e.start = sc.start_time;
                e.counter(
                    "node_system_container_cpu_usage_seconds_total",
                    l,
                    v,
                    c.time,
                );
            }
            if let Some(m) = &sc.memory {
                let name = "node_system_container_memory_working_set_bytes";
                e.push(name, l, m.working_set_bytes, m.time);
            }
        }
    }
    for pod in summary.pods.iter().flatten() {
        e.pod(pod);
    }
    Converted {
        newest,
        ahead_ms,
        negative_counters: e.negative_counters,
        undescribed: e.undescribed,
    }
}

#[derive(Clone, Copy)]
enum Level {
    Node = 0,
    Pod = 1,
    Container = 2,
}

const CPU_NAMES: [&str; 3] = [
    "node_cpu_usage_seconds_total",
    "pod_cpu_usage_seconds_total",
    "container_cpu_usage_seconds_total",
];

/// `{level}_pressure_{cpu,memory,io}_{waiting,stalled}_seconds_total`, spelled out so the names
/// stay `&'static str` and greppable.
const PSI_NAMES: [[[&str; 2]; 3]; 3] = [
    [
        [
            "node_pressure_cpu_waiting_seconds_total",
            "node_pressure_cpu_stalled_seconds_total",
        ],
        [
            "node_pressure_memory_waiting_seconds_total",
            "node_pressure_memory_stalled_seconds_total",
        ],
        [
            "node_pressure_io_waiting_seconds_total",
            "node_pressure_io_stalled_seconds_total",
        ],
    ],
    [
        [
            "pod_pressure_cpu_waiting_seconds_total",
            "pod_pressure_cpu_stalled_seconds_total",
        ],
        [
            "pod_pressure_memory_waiting_seconds_total",
            "pod_pressure_memory_stalled_seconds_total",
        ],
        [
            "pod_pressure_io_waiting_seconds_total",
            "pod_pressure_io_stalled_seconds_total",
        ],
    ],
    [
        [
            "container_pressure_cpu_waiting_seconds_total",
            "container_pressure_cpu_stalled_seconds_total",
        ],
        [
            "container_pressure_memory_waiting_seconds_total",
            "container_pressure_memory_stalled_seconds_total",
        ],
        [
            "container_pressure_io_waiting_seconds_total",
            "container_pressure_io_stalled_seconds_total",
        ],
    ],
];

/// Names of the six filesystem gauges of one filesystem:
/// available, capacity, used bytes; inodes, inodes free, inodes used.
type FsNames = [&'static str; 6];

const NODE_FS: FsNames = [
    "node_fs_available_bytes",
    "node_fs_capacity_bytes",
    "node_fs_used_bytes",
    "node_fs_inodes",
    "node_fs_inodes_free",
    "node_fs_inodes_used",
];
const NODE_IMAGEFS: FsNames = [
    "node_imagefs_available_bytes",
    "node_imagefs_capacity_bytes",
    "node_imagefs_used_bytes",
    "node_imagefs_inodes",
    "node_imagefs_inodes_free",
    "node_imagefs_inodes_used",
];
const NODE_CONTAINERFS: FsNames = [
    "node_containerfs_available_bytes",
    "node_containerfs_capacity_bytes",
    "node_containerfs_used_bytes",
    "node_containerfs_inodes",
    "node_containerfs_inodes_free",
    "node_containerfs_inodes_used",
];
const POD_VOLUME: FsNames = [
    "pod_volume_available_bytes",
    "pod_volume_capacity_bytes",
    "pod_volume_used_bytes",
    "pod_volume_inodes",
    "pod_volume_inodes_free",
    "pod_volume_inodes_used",
];
const PVC_VOLUME: FsNames = [
    "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_capacity_bytes",
    "kubelet_volume_stats_used_bytes",
    "kubelet_volume_stats_inodes",
    "kubelet_volume_stats_inodes_free",
    "kubelet_volume_stats_inodes_used",
];

/// Receive bytes, transmit bytes, receive errors, transmit errors.
type NetNames = [&'static str; 4];

const NODE_NET: NetNames = [
    "node_network_receive_bytes_total",
    "node_network_transmit_bytes_total",
    "node_network_receive_errors_total",
    "node_network_transmit_errors_total",
];
const POD_NET: NetNames = [
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_network_receive_errors_total",
    "container_network_transmit_errors_total",
];

fn seconds(t: Option<Time>) -> Option<f64> {
    t.map(|t| t.0 as f64 / 1e3)
}

struct Emitter<'o, 's, F> {
    sink: &'o mut F,
    reference: i64,
    horizon: i64,
    max_age: i64,
    context: Context<'s>,
    undescribed: usize,
    negative_counters: usize,
    /// The start time of what the counters being emitted count for (node, pod, container).
    start: Option<Time>,
}

impl<'s, F: FnMut(&Sample<'_>)> Emitter<'_, 's, F> {
    fn timestamp(&self, time: Option<Time>) -> i64 {
        match time {
            // Left as it is for the series tracker to refuse.
            Some(Time(t)) if t > self.horizon => t,
            Some(Time(t)) if self.reference.saturating_sub(t) <= self.max_age => t,
            _ => self.reference,
        }
    }

    /// Emits one sample when the summary had the value; a missing value is no sample.
    fn push(&mut self, name: &'static str, labels: &Labels<'s>, v: Option<f64>, t: Option<Time>) {
        self.emit(name, labels, v, t, None);
    }

    /// [`Emitter::push`] for a counter: the sample carries the current start time. A negative
    /// value is no counter's and is left out.
    fn counter(
        &mut self,
        name: &'static str,
        labels: &Labels<'s>,
        v: Option<f64>,
        t: Option<Time>,
    ) {
        if v.is_some_and(|v| v < 0.0) {
            self.negative_counters += 1;
            return;
        }
        self.emit(name, labels, v, t, self.start);
    }

    fn emit(
        &mut self,
        name: &'static str,
        labels: &Labels<'s>,
        v: Option<f64>,
        t: Option<Time>,
        start: Option<Time>,
    ) {
        if let Some(value) = v {
            let timestamp_ms = self.timestamp(t);
            (self.sink)(&Sample {
                name,
                family: labels.family,
                labels: labels.as_slice(),
                value,
                timestamp_ms,
                start_ms: start_ms(start, timestamp_ms),
            });
        }
    }

    /// CPU is reported in core-nanoseconds; Prometheus counts seconds. The usage counter and
    /// the pressure counters have their own labels (`metrics_path` differs at node and pod
    /// level).
    fn cpu(&mut self, level: Level, l: &Labels<'s>, psi_l: &Labels<'s>, cpu: Option<&CpuStats>) {
        let Some(c) = cpu else { return };
        let name = CPU_NAMES[level as usize];
        self.counter(name, l, c.usage_core_nano_seconds.map(|v| v / 1e9), c.time);
        self.psi(&PSI_NAMES[level as usize][0], psi_l, c.psi.as_ref(), c.time);
    }

    fn io(&mut self, level: Level, l: &Labels<'s>, io: Option<&IoStats>) {
        if let Some(io) = io {
            self.psi(&PSI_NAMES[level as usize][2], l, io.psi.as_ref(), io.time);
        }
    }

    /// PSI totals are microseconds; `some` is time waiting, `full` time fully stalled.
    fn psi(
        &mut self,
        names: &[&'static str; 2],
        l: &Labels<'s>,
        p: Option<&PsiStats>,
        t: Option<Time>,
    ) {
        let Some(p) = p else { return };
        let secs = |d: &Option<crate::kubelet::summary::PsiData>| {
            d.as_ref().and_then(|d| d.total).map(|v| v / 1e6)
        };
        self.counter(names[0], l, secs(&p.some), t);
        self.counter(names[1], l, secs(&p.full), t);
    }

    fn fs(&mut self, names: &FsNames, l: &Labels<'s>, fs: Option<&FsStats>) {
        if let Some(f) = fs {
            let values = [
                f.available_bytes,
                f.capacity_bytes,
                f.used_bytes,
                f.inodes,
                f.inodes_free,
                f.inodes_used,
            ];
            self.fs_values(names, l, values, f.time);
        }
    }

    /// A volume carries the same six filesystem values inline, next to its name.
    fn volume(&mut self, names: &FsNames, l: &Labels<'s>, v: &VolumeStats<'_>) {
        let values = [
            v.available_bytes,
            v.capacity_bytes,
            v.used_bytes,
            v.inodes,
            v.inodes_free,
            v.inodes_used,
        ];
        self.fs_values(names, l, values, v.time);
    }

    fn fs_values(
        &mut self,
        names: &FsNames,
        l: &Labels<'s>,
        values: [Option<f64>; 6],
        t: Option<Time>,
    ) {
        for (name, value) in names.iter().zip(values) {
            self.push(name, l, value, t);
        }
    }

    /// Legacy kubelets only have the inline default interface; newer ones list `interfaces`,
    /// where an unnamed entry repeats a named one unless it is the only entry.
    fn network(&mut self, names: &NetNames, l: &Labels<'s>, net: Option<&'s NetworkStats<'_>>) {
        let Some(n) = net else { return };
        let t = n.time;
        match n.interfaces.as_deref() {
            Some(list) if !list.is_empty() => {
                let sole = list.len() == 1;
                let mut il = l.with("interface", "");
                for i in list {
                    let name = i.name.as_deref().unwrap_or("");
                    if name.is_empty() && !sole {
                        continue;
                    }
                    il.set_last_value(name);
                    self.counter(names[0], &il, i.rx_bytes, t);
                    self.counter(names[1], &il, i.tx_bytes, t);
                    self.counter(names[2], &il, i.rx_errors, t);
                    self.counter(names[3], &il, i.tx_errors, t);
                }
            }
            _ => {
                let l = &l.with("interface", n.name.as_deref().unwrap_or(""));
                self.counter(names[0], l, n.rx_bytes, t);
                self.counter(names[1], l, n.tx_bytes, t);
                self.counter(names[2], l, n.rx_errors, t);
                self.counter(names[3], l, n.tx_errors, t);
            }
        }
    }

    fn pod(&mut self, pod: &'s PodStats<'_>) {
        let Some(pod_ref) = &pod.pod_ref else { return };
        // A pod without a name cannot be told apart from its neighbours.
        let Some(name) = pod_ref.name.as_deref().filter(|n| !n.is_empty()) else {
            return;
        };
        let namespace = pod_ref.namespace.as_deref().unwrap_or("");
        let info = self.pod_info(pod_ref.uid.as_deref());
        let mut pod_l = Labels::new().with("namespace", namespace).with("pod", name);
        if let Some(info) = info {
            for (pod_label, label) in self.context.pod_labels {
                if let Some(v) = info.label(pod_label) {
                    pod_l = pod_l.with(label, v);
                }
            }
        }
        let l = &pod_l;
        // Pod counters (CPU, pressure, the pod's network) count since the pod started.
        self.start = pod.start_time;
        let res = &l.in_family(&RESOURCE);
        self.cpu(Level::Pod, res, l, pod.cpu.as_ref());
        if let Some(m) = &pod.memory {
            self.push(
                "pod_memory_working_set_bytes",
                res,
                m.working_set_bytes,
                m.time,
            );
            self.push("pod_memory_usage_bytes", l, m.usage_bytes, m.time);
            self.push("pod_memory_rss_bytes", l, m.rss_bytes, m.time);
            self.psi(
                &PSI_NAMES[Level::Pod as usize][1],
                l,
                m.psi.as_ref(),
                m.time,
            );
        }
        self.io(Level::Pod, l, pod.io.as_ref());
        if let Some(s) = &pod.swap {
            self.push("pod_swap_usage_bytes", res, s.swap_usage_bytes, s.time);
        }
        self.push("pod_start_time_seconds", l, seconds(pod.start_time), None);
        let net = &l.in_family(&CADVISOR);
        self.network(&POD_NET, net, pod.network.as_ref());
        if let Some(es) = &pod.ephemeral_storage {
            self.push(
                "pod_ephemeral_storage_used_bytes",
                l,
                es.used_bytes,
                es.time,
            );
            self.push(
                "pod_ephemeral_storage_inodes_used",
                l,
                es.inodes_used,
                es.time,
            );
        }
        for v in pod.volumes.iter().flatten() {
            if let Some(vname) = v.name.as_deref() {
                self.volume(&POD_VOLUME, &l.with("volume", vname), v);
            }
            if let Some(pvc) = &v.pvc_ref {
                if let Some(claim) = pvc.name.as_deref().filter(|n| !n.is_empty()) {
                    let ns = pvc.namespace.as_deref().unwrap_or(namespace);
                    let pl = Labels::new()
                        .with("namespace", ns)
                        .with("persistentvolumeclaim", claim)
                        .in_family(&KUBELET_METRICS);
                    self.volume(&PVC_VOLUME, &pl, v);
                }
            }
        }
        if let Some(ps) = &pod.process_stats {
            self.push("pod_processes", l, ps.process_count, None);
        }
        for c in pod.containers.iter().flatten() {
            if let Some(cname) = c.name.as_deref() {
                let cl = self.container_labels(l.with("container", cname), info, cname, c);
                self.container(&cl, c);
            }
        }
    }

    /// The metadata of the pod with this UID; counts the pod as undescribed when there is
    /// metadata but not for it.
    fn pod_info(&mut self, uid: Option<&str>) -> Option<&'s PodInfo> {
        let pods = self.context.pods?;
        let info = uid.and_then(|u| pods.get(u));
        if info.is_none() {
            self.undescribed += 1;
        }
        info
    }

    /// `l` with the container's `image` and `name`, when the metadata describes this instance
    /// of the container (see `PodMetadata::coverage`).
    fn container_labels(
        &mut self,
        l: Labels<'s>,
        pod: Option<&'s PodInfo>,
        name: &str,
        c: &ContainerStats<'_>,
    ) -> Labels<'s> {
        let Some(pods) = self.context.pods else {
            return l;
        };
        let known = pod.and_then(|p| p.container(name));
        let coverage = match known {
            Some(_) => pods.coverage(c.start_time.map(|t| t.0)),
            None => Coverage::Unknown,
        };
        if coverage != Coverage::Current {
            self.undescribed += 1;
        }
        match known {
            Some(info) if coverage != Coverage::Unknown => {
                let mut l = l;
                if !info.image.is_empty() {
                    l = l.with("image", &info.image);
                }
                if !info.id.is_empty() {
                    l = l.with("name", &info.id);
                }
                l
            }
            _ => l,
        }
    }

    fn container(&mut self, l: &Labels<'s>, c: &'s ContainerStats<'_>) {
        // A container's counters restart with it: they count since its own start.
        self.start = c.start_time;
        let cad = &l.in_family(&CADVISOR);
        self.cpu(Level::Container, cad, cad, c.cpu.as_ref());
        if let Some(m) = &c.memory {
            self.memory_container(cad, m);
        }
        self.io(Level::Container, cad, c.io.as_ref());
        if let Some(s) = &c.swap {
            let res = &l.in_family(&RESOURCE);
            self.push(
                "container_swap_usage_bytes",
                res,
                s.swap_usage_bytes,
                s.time,
            );
            self.push("container_memory_swap", cad, s.swap_usage_bytes, s.time);
        }
        self.push(
            "container_start_time_seconds",
            cad,
            seconds(c.start_time),
            None,
        );
        if let Some(r) = &c.rootfs {
            self.push("container_fs_usage_bytes", cad, r.used_bytes, r.time);
            self.push("container_fs_limit_bytes", cad, r.capacity_bytes, r.time);
            self.push("container_fs_inodes_free", cad, r.inodes_free, r.time);
            self.push("container_fs_inodes_total", cad, r.inodes, r.time);
        }
        if let Some(logs) = &c.logs {
            // Our own name: no kubelet endpoint has it, so no `metrics_path`.
            self.push("container_logs_usage_bytes", l, logs.used_bytes, logs.time);
        }
        for a in c.accelerators.iter().flatten() {
            let al = cad
                .with("make", a.make.as_deref().unwrap_or(""))
                .with("model", a.model.as_deref().unwrap_or(""))
                .with("acc_id", a.id.as_deref().unwrap_or(""));
            self.push(
                "container_accelerator_memory_used_bytes",
                &al,
                a.memory_used,
                None,
            );
            self.push(
                "container_accelerator_memory_total_bytes",
                &al,
                a.memory_total,
                None,
            );
            self.push("container_accelerator_duty_cycle", &al, a.duty_cycle, None);
        }
    }

    fn memory_container(&mut self, l: &Labels<'s>, m: &MemoryStats) {
        let t = m.time;
        self.push(
            "container_memory_working_set_bytes",
            l,
            m.working_set_bytes,
            t,
        );
        self.push("container_memory_usage_bytes", l, m.usage_bytes, t);
        self.push("container_memory_rss", l, m.rss_bytes, t);
        let faults = "container_memory_failures_total";
        let mut fl = l.with("scope", "container").with("failure_type", "pgfault");
        self.counter(faults, &fl, m.page_faults, t);
        fl.set_last_value("pgmajfault");
        self.counter(faults, &fl, m.major_page_faults, t);
        self.psi(
            &PSI_NAMES[Level::Container as usize][1],
            l,
            m.psi.as_ref(),
            t,
        );
    }
}

#[cfg(test)]
mod tests;
