//! Family metadata: for every metric name kubelet-push sends, its type (counter or gauge), a
//! one-line help text and its unit. Remote Write 2.0 carries them with every series (type,
//! help ref, unit ref); 1.0 has no place for them. The wording follows `docs/metrics.md`, the
//! contract for names and types; this table is checked against it and against the golden files
//! (`tests`).
//!
//! Units follow Prometheus's naming conventions: the base unit the name ends with (`seconds`,
//! `bytes`, before any `_total`), `""` when the name has none (`container_memory_rss` is
//! cAdvisor's name for bytes without the suffix; inode, process and error counts are counts).
//! Counters are the names ending in `_total`, except cAdvisor's `container_fs_inodes_total`, a
//! gauge (a filesystem's inode count) whose name we keep for the dashboards that use it.
//! `up`, `scrape_duration_seconds` and `scrape_samples_scraped` are gauges, as Prometheus
//! types the series it writes for every scrape.
//!
//! Not here: which series exist (`pipeline::convert`), how metadata is put on the wire
//! (`remote_write::v2`). Lookup is a binary search over a sorted static table: a handful of
//! string comparisons, no allocation.

/// How a family's values behave over time: the types Remote Write 2.0's metadata names.
/// The kubelet's families are counters and gauges; a scraped exporter may declare any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricType {
    /// Only grows, except when whatever counts restarts; names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// Declared `untyped`/`unknown`, or not declared at all.
    #[default]
    Unknown,
}

/// A family's metadata as an encoder reads it, whoever owns the strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta<'a> {
    pub kind: MetricType,
    pub help: &'a str,
    pub unit: &'a str,
}

/// Where an encoder finds the family of a series' metric name. Families are numbered
/// `0..len()`, so an encoder can keep per-family state (interned strings) in a vector.
pub trait Catalog {
    /// How many families there are.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The family of the metric name `name`, if it has one.
    fn index(&self, name: &str) -> Option<usize>;
    /// Family `index` (below [`Catalog::len`]).
    fn meta(&self, index: usize) -> Meta<'_>;
}

/// The families kubelet-push itself sends: the summary's and the per-poll series'.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kubelet;

impl Catalog for Kubelet {
    fn len(&self) -> usize {
        FAMILIES.len()
    }

    fn index(&self, name: &str) -> Option<usize> {
        index(name)
    }

    fn meta(&self, index: usize) -> Meta<'_> {
        let f = &FAMILIES[index];
        Meta {
            kind: f.kind,
            help: f.help,
            unit: f.unit,
        }
    }
}

/// What a receiver is told about a metric name.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    /// One line, no trailing period.
    pub help: &'static str,
    /// `""` when the name has no unit.
    pub unit: &'static str,
}

/// The family of a metric name kubelet-push sends; `None` for any other name.
pub fn family(name: &str) -> Option<&'static Family> {
    index(name).map(|i| &FAMILIES[i])
}

/// Where `name`'s family is in [`all`], for callers keeping something per family.
pub fn index(name: &str) -> Option<usize> {
    FAMILIES.binary_search_by(|f| f.name.cmp(name)).ok()
}

/// Every family, sorted by name.
pub fn all() -> &'static [Family] {
    &FAMILIES
}

use MetricType::{Counter as C, Gauge as G};

const fn f(name: &'static str, kind: MetricType, unit: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind,
        help,
        unit,
    }
}

/// Sorted by name (byte-wise), one entry per name `pipeline::convert` and the poller emit.
static FAMILIES: [Family; 98] = [
    f("container_accelerator_duty_cycle", G, "", "Percent of time the container's accelerator was busy (containers[].accelerators[].dutyCycle)"),
    f("container_accelerator_memory_total_bytes", G, "bytes", "Total memory of the container's accelerator (containers[].accelerators[].memoryTotal)"),
    f("container_accelerator_memory_used_bytes", G, "bytes", "Memory of the accelerator the container uses (containers[].accelerators[].memoryUsed)"),
    f("container_cpu_usage_seconds_total", C, "seconds", "Cumulative CPU time the container used, in core-seconds (containers[].cpu.usageCoreNanoSeconds)"),
    f("container_fs_inodes_free", G, "", "Free inodes on the container's root filesystem (containers[].rootfs.inodesFree)"),
    f("container_fs_inodes_total", G, "", "Inodes of the container's root filesystem (containers[].rootfs.inodes)"),
    f("container_fs_limit_bytes", G, "bytes", "Capacity of the container's root filesystem (containers[].rootfs.capacityBytes)"),
    f("container_fs_usage_bytes", G, "bytes", "Bytes the container uses on its root filesystem (containers[].rootfs.usedBytes)"),
    f("container_logs_usage_bytes", G, "bytes", "Bytes the container's logs use (containers[].logs.usedBytes)"),
    f("container_memory_failures_total", C, "", "Page faults of the container by failure_type (containers[].memory.pageFaults, majorPageFaults)"),
    f("container_memory_rss", G, "", "Resident set size of the container in bytes (containers[].memory.rssBytes)"),
    f("container_memory_swap", G, "", "Swap the container uses in bytes (containers[].swap.swapUsageBytes)"),
    f("container_memory_usage_bytes", G, "bytes", "Memory the container uses, page cache included (containers[].memory.usageBytes)"),
    f("container_memory_working_set_bytes", G, "bytes", "Working set of the container, what the OOM killer and kubectl top use (containers[].memory.workingSetBytes)"),
    f("container_network_receive_bytes_total", C, "bytes", "Bytes the pod received on an interface (pods[].network.interfaces[].rxBytes)"),
    f("container_network_receive_errors_total", C, "", "Receive errors of the pod on an interface (pods[].network.interfaces[].rxErrors)"),
    f("container_network_transmit_bytes_total", C, "bytes", "Bytes the pod sent on an interface (pods[].network.interfaces[].txBytes)"),
    f("container_network_transmit_errors_total", C, "", "Transmit errors of the pod on an interface (pods[].network.interfaces[].txErrors)"),
    f("container_pressure_cpu_stalled_seconds_total", C, "seconds", "Time all of the container's tasks were stalled on CPU (containers[].cpu.psi.full.total)"),
    f("container_pressure_cpu_waiting_seconds_total", C, "seconds", "Time some of the container's tasks waited for CPU (containers[].cpu.psi.some.total)"),
    f("container_pressure_io_stalled_seconds_total", C, "seconds", "Time all of the container's tasks were stalled on IO (containers[].io.psi.full.total)"),
    f("container_pressure_io_waiting_seconds_total", C, "seconds", "Time some of the container's tasks waited for IO (containers[].io.psi.some.total)"),
    f("container_pressure_memory_stalled_seconds_total", C, "seconds", "Time all of the container's tasks were stalled on memory (containers[].memory.psi.full.total)"),
    f("container_pressure_memory_waiting_seconds_total", C, "seconds", "Time some of the container's tasks waited for memory (containers[].memory.psi.some.total)"),
    f("container_start_time_seconds", G, "seconds", "Start time of the container, Unix seconds (containers[].startTime)"),
    f("container_swap_usage_bytes", G, "bytes", "Swap the container uses (containers[].swap.swapUsageBytes)"),
    f("kubelet_volume_stats_available_bytes", G, "bytes", "Available bytes of a persistent volume claim (pods[].volume[] with a pvcRef)"),
    f("kubelet_volume_stats_capacity_bytes", G, "bytes", "Capacity of a persistent volume claim (pods[].volume[] with a pvcRef)"),
    f("kubelet_volume_stats_inodes", G, "", "Inodes of a persistent volume claim (pods[].volume[] with a pvcRef)"),
    f("kubelet_volume_stats_inodes_free", G, "", "Free inodes of a persistent volume claim (pods[].volume[] with a pvcRef)"),
    f("kubelet_volume_stats_inodes_used", G, "", "Used inodes of a persistent volume claim (pods[].volume[] with a pvcRef)"),
    f("kubelet_volume_stats_used_bytes", G, "bytes", "Used bytes of a persistent volume claim (pods[].volume[] with a pvcRef)"),
    f("node_containerfs_available_bytes", G, "bytes", "Available bytes of the filesystem holding writable container layers (node.runtime.containerFs)"),
    f("node_containerfs_capacity_bytes", G, "bytes", "Capacity of the filesystem holding writable container layers (node.runtime.containerFs)"),
    f("node_containerfs_inodes", G, "", "Inodes of the filesystem holding writable container layers (node.runtime.containerFs)"),
    f("node_containerfs_inodes_free", G, "", "Free inodes of the filesystem holding writable container layers (node.runtime.containerFs)"),
    f("node_containerfs_inodes_used", G, "", "Used inodes of the filesystem holding writable container layers (node.runtime.containerFs)"),
    f("node_containerfs_used_bytes", G, "bytes", "Used bytes of the filesystem holding writable container layers (node.runtime.containerFs)"),
    f("node_cpu_usage_seconds_total", C, "seconds", "Cumulative CPU time the node used, in core-seconds (node.cpu.usageCoreNanoSeconds)"),
    f("node_fs_available_bytes", G, "bytes", "Available bytes of the filesystem the kubelet runs on (node.fs)"),
    f("node_fs_capacity_bytes", G, "bytes", "Capacity of the filesystem the kubelet runs on (node.fs)"),
    f("node_fs_inodes", G, "", "Inodes of the filesystem the kubelet runs on (node.fs)"),
    f("node_fs_inodes_free", G, "", "Free inodes of the filesystem the kubelet runs on (node.fs)"),
    f("node_fs_inodes_used", G, "", "Used inodes of the filesystem the kubelet runs on (node.fs)"),
    f("node_fs_used_bytes", G, "bytes", "Used bytes of the filesystem the kubelet runs on (node.fs)"),
    f("node_imagefs_available_bytes", G, "bytes", "Available bytes of the filesystem holding container images (node.runtime.imageFs)"),
    f("node_imagefs_capacity_bytes", G, "bytes", "Capacity of the filesystem holding container images (node.runtime.imageFs)"),
    f("node_imagefs_inodes", G, "", "Inodes of the filesystem holding container images (node.runtime.imageFs)"),
    f("node_imagefs_inodes_free", G, "", "Free inodes of the filesystem holding container images (node.runtime.imageFs)"),
    f("node_imagefs_inodes_used", G, "", "Used inodes of the filesystem holding container images (node.runtime.imageFs)"),
    f("node_imagefs_used_bytes", G, "bytes", "Used bytes of the filesystem holding container images (node.runtime.imageFs)"),
    f("node_memory_available_bytes", G, "bytes", "Memory available on the node (node.memory.availableBytes)"),
    f("node_memory_major_page_faults_total", C, "", "Major page faults on the node (node.memory.majorPageFaults)"),
    f("node_memory_page_faults_total", C, "", "Page faults on the node (node.memory.pageFaults)"),
    f("node_memory_rss_bytes", G, "bytes", "Resident set size of the node's processes (node.memory.rssBytes)"),
    f("node_memory_usage_bytes", G, "bytes", "Memory the node uses, page cache included (node.memory.usageBytes)"),
    f("node_memory_working_set_bytes", G, "bytes", "Working set of the node (node.memory.workingSetBytes)"),
    f("node_network_receive_bytes_total", C, "bytes", "Bytes the node received on an interface (node.network.interfaces[].rxBytes)"),
    f("node_network_receive_errors_total", C, "", "Receive errors of the node on an interface (node.network.interfaces[].rxErrors)"),
    f("node_network_transmit_bytes_total", C, "bytes", "Bytes the node sent on an interface (node.network.interfaces[].txBytes)"),
    f("node_network_transmit_errors_total", C, "", "Transmit errors of the node on an interface (node.network.interfaces[].txErrors)"),
    f("node_pressure_cpu_stalled_seconds_total", C, "seconds", "Time all of the node's tasks were stalled on CPU (node.cpu.psi.full.total)"),
    f("node_pressure_cpu_waiting_seconds_total", C, "seconds", "Time some of the node's tasks waited for CPU (node.cpu.psi.some.total)"),
    f("node_pressure_io_stalled_seconds_total", C, "seconds", "Time all of the node's tasks were stalled on IO (node.io.psi.full.total)"),
    f("node_pressure_io_waiting_seconds_total", C, "seconds", "Time some of the node's tasks waited for IO (node.io.psi.some.total)"),
    f("node_pressure_memory_stalled_seconds_total", C, "seconds", "Time all of the node's tasks were stalled on memory (node.memory.psi.full.total)"),
    f("node_pressure_memory_waiting_seconds_total", C, "seconds", "Time some of the node's tasks waited for memory (node.memory.psi.some.total)"),
    f("node_processes", G, "", "Processes running on the node (node.rlimit.curproc)"),
    f("node_processes_limit", G, "", "Most processes the node allows (node.rlimit.maxpid)"),
    f("node_start_time_seconds", G, "seconds", "Start time of the node, Unix seconds (node.startTime)"),
    f("node_swap_available_bytes", G, "bytes", "Swap available on the node (node.swap.swapAvailableBytes)"),
    f("node_swap_usage_bytes", G, "bytes", "Swap the node uses (node.swap.swapUsageBytes)"),
    f("node_system_container_cpu_usage_seconds_total", C, "seconds", "Cumulative CPU time of a node system container, in core-seconds (node.systemContainers[].cpu)"),
    f("node_system_container_memory_working_set_bytes", G, "bytes", "Working set of a node system container (node.systemContainers[].memory)"),
    f("pod_cpu_usage_seconds_total", C, "seconds", "Cumulative CPU time the pod used, in core-seconds (pods[].cpu.usageCoreNanoSeconds)"),
    f("pod_ephemeral_storage_inodes_used", G, "", "Inodes the pod uses on ephemeral storage (pods[].ephemeral-storage.inodesUsed)"),
    f("pod_ephemeral_storage_used_bytes", G, "bytes", "Bytes the pod uses on ephemeral storage (pods[].ephemeral-storage.usedBytes)"),
    f("pod_memory_rss_bytes", G, "bytes", "Resident set size of the pod (pods[].memory.rssBytes)"),
    f("pod_memory_usage_bytes", G, "bytes", "Memory the pod uses, page cache included (pods[].memory.usageBytes)"),
    f("pod_memory_working_set_bytes", G, "bytes", "Working set of the pod (pods[].memory.workingSetBytes)"),
    f("pod_pressure_cpu_stalled_seconds_total", C, "seconds", "Time all of the pod's tasks were stalled on CPU (pods[].cpu.psi.full.total)"),
    f("pod_pressure_cpu_waiting_seconds_total", C, "seconds", "Time some of the pod's tasks waited for CPU (pods[].cpu.psi.some.total)"),
    f("pod_pressure_io_stalled_seconds_total", C, "seconds", "Time all of the pod's tasks were stalled on IO (pods[].io.psi.full.total)"),
    f("pod_pressure_io_waiting_seconds_total", C, "seconds", "Time some of the pod's tasks waited for IO (pods[].io.psi.some.total)"),
    f("pod_pressure_memory_stalled_seconds_total", C, "seconds", "Time all of the pod's tasks were stalled on memory (pods[].memory.psi.full.total)"),
    f("pod_pressure_memory_waiting_seconds_total", C, "seconds", "Time some of the pod's tasks waited for memory (pods[].memory.psi.some.total)"),
    f("pod_processes", G, "", "Processes running in the pod (pods[].process_stats.process_count)"),
    f("pod_start_time_seconds", G, "seconds", "Start time of the pod, Unix seconds (pods[].startTime)"),
    f("pod_swap_usage_bytes", G, "bytes", "Swap the pod uses (pods[].swap.swapUsageBytes)"),
    f("pod_volume_available_bytes", G, "bytes", "Available bytes of a pod volume (pods[].volume[])"),
    f("pod_volume_capacity_bytes", G, "bytes", "Capacity of a pod volume (pods[].volume[])"),
    f("pod_volume_inodes", G, "", "Inodes of a pod volume (pods[].volume[])"),
    f("pod_volume_inodes_free", G, "", "Free inodes of a pod volume (pods[].volume[])"),
    f("pod_volume_inodes_used", G, "", "Used inodes of a pod volume (pods[].volume[])"),
    f("pod_volume_used_bytes", G, "bytes", "Used bytes of a pod volume (pods[].volume[])"),
    f("scrape_duration_seconds", G, "seconds", "Wall time of the poll: fetch, parse, convert"),
    f("scrape_samples_scraped", G, "", "Distinct series the poll produced, before repeated timestamps are dropped"),
    f("up", G, "", "1 when the poll returned a summary that parsed, 0 otherwise"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The metric names of every golden file (the reviewed output of every captured summary).
    fn golden_names() -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut files = 0;
        for entry in std::fs::read_dir(root().join("tests/golden")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "prom") {
                continue;
            }
            files += 1;
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                names.insert(line[..end].to_owned());
            }
        }
        assert!(files >= 11, "golden files: {files}");
        names
    }

    #[test]
    fn sorted_and_unique_so_lookup_finds_every_entry() {
        for w in FAMILIES.windows(2) {
            assert!(w[0].name < w[1].name, "{} / {}", w[0].name, w[1].name);
        }
        for fam in all() {
            assert_eq!(family(fam.name), Some(fam));
        }
        assert_eq!(family("node_cpu_usage_seconds"), None);
        assert_eq!(family(""), None);
    }

    #[test]
    fn every_golden_name_has_an_entry_and_every_entry_is_used() {
        let golden = golden_names();
        let missing: Vec<_> = golden.iter().filter(|n| family(n).is_none()).collect();
        assert!(missing.is_empty(), "no metadata for {missing:?}");
        // No capture has an accelerator (newer kubelets no longer report them; the converter
        // still reads them where one does), so these three are the only entries no golden
        // file shows; `pipeline::convert`'s tests emit them.
        let unused: Vec<_> = all()
            .iter()
            .map(|f| f.name)
            .filter(|n| !golden.contains(*n))
            .collect();
        assert_eq!(
            unused,
            [
                "container_accelerator_duty_cycle",
                "container_accelerator_memory_total_bytes",
                "container_accelerator_memory_used_bytes",
            ]
        );
    }

    #[test]
    fn types_follow_the_total_suffix_and_units_the_name() {
        for fam in all() {
            // cAdvisor's name for a gauge (the inode count of a filesystem), kept for the
            // dashboards that query it: the one name where `_total` does not mean counter.
            let counter = fam.name.ends_with("_total") && fam.name != "container_fs_inodes_total";
            assert_eq!(fam.kind == MetricType::Counter, counter, "{}", fam.name);
            let base = if counter {
                fam.name.strip_suffix("_total")
            } else {
                None
            }
            .unwrap_or(fam.name);
            let expected = ["seconds", "bytes"]
                .into_iter()
                .find(|u| base.ends_with(&format!("_{u}")))
                .unwrap_or("");
            assert_eq!(fam.unit, expected, "{}", fam.name);
            assert!(
                !fam.help.is_empty()
                    && !fam.help.contains('\n')
                    && !fam.help.ends_with('.')
                    && fam.help.len() < 120,
                "{}: {:?}",
                fam.name,
                fam.help
            );
        }
    }

    /// Expands `a_{x,y}_b` into `a_x_b`, `a_y_b`.
    fn expand(name: &str) -> Vec<String> {
        match (name.find('{'), name.find('}')) {
            (Some(open), Some(close)) if open < close => name[open + 1..close]
                .split(',')
                .flat_map(|alt| expand(&format!("{}{alt}{}", &name[..open], &name[close + 1..])))
                .collect(),
            _ => vec![name.to_owned()],
        }
    }

    /// The type column of every table in docs/metrics.md agrees with the table here.
    #[test]
    fn types_agree_with_the_docs() {
        let docs = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
        let mut documented = BTreeSet::new();
        for line in docs.lines() {
            let cells: Vec<&str> = line.split(" | ").collect();
            if !line.starts_with("| `") || cells.len() < 3 {
                continue;
            }
            let kind = match cells[1].trim() {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                _ => continue,
            };
            for token in cells[0].split('`').skip(1).step_by(2) {
                // Label lists, partial names (`_inodes_free`) and wildcards (`node_imagefs_*`).
                if token.starts_with(['{', '_']) || token.contains('*') {
                    continue;
                }
                // The agent's own metrics: `telemetry` registers them with their types, and
                // they are pushed as a scrape target's, with the types of its exposition.
                if token.starts_with("kubelet_push_") || token.starts_with("process_") {
                    continue;
                }
                // A trailing `{labels}` names labels, not alternatives.
                let token = match token.rfind('{') {
                    Some(i) if token.ends_with('}') => &token[..i],
                    _ => token,
                };
                for name in expand(token) {
                    let fam = family(&name).unwrap_or_else(|| panic!("{name} is documented"));
                    assert_eq!(fam.kind, kind, "{name}");
                    documented.insert(name);
                }
            }
        }
        // What the docs spell out only as "the same six", "`_inodes_free`", or in the per-poll
        // table (no type column; gauges as Prometheus's own scrape series).
        let implicit = |n: &str| {
            n.starts_with("node_imagefs_")
                || n.starts_with("node_containerfs_")
                || n.starts_with("kubelet_volume_stats_inodes_")
                || ["up", "scrape_duration_seconds", "scrape_samples_scraped"].contains(&n)
        };
        let undocumented: Vec<_> = all()
            .iter()
            .map(|f| f.name)
            .filter(|n| !documented.contains(*n) && !implicit(n))
            .collect();
        assert!(undocumented.is_empty(), "{undocumented:?}");
        assert!(documented.len() > 70, "{}", documented.len());
    }
}
