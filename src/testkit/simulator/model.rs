//! The simulated Windows node: its workloads, the pods running them with deterministic
//! counters and gauges, pod turnover, the kubelet's per-section stats caching, and the
//! `/stats/summary` document it reports at any given time. Everything is a pure function of
//! (seed, boot time, time asked for). It owns no I/O; `server` serves it and `wire` spells it.

use std::time::{SystemTime, UNIX_EPOCH};

use super::rng::keyed;
use super::wire::{
    rfc3339, ContainerStats, Cpu, Fs, Interface, Memory, Network, NodeStats, PodRef, PodStats,
    PvcRef, Runtime, Summary, Volume,
};

const NODE_NAME: &str = "demo-win-node";
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const NODE_MEMORY: u64 = 16 * GIB;
/// The commit limit on Windows is physical memory plus the page file.
const NODE_PAGEFILE: u64 = 4 * GIB;
/// What a 128 GB managed OS disk shows as capacity once formatted.
const NODE_DISK: u64 = 136_912_564_224;
const PVC_CAPACITY: u64 = 10 * GIB;
/// The kubelet rotates container logs, so their size is bounded.
const LOG_CAP: u64 = 10 * MIB;
const LIFETIME_SECS: (u64, u64) = (20, 120);

/// A deterministic gauge: a triangle wave of `pct` percent amplitude around `base`. Integer
/// only so the output is bit-identical on every platform.
fn wobble(base: u64, pct: u64, t: u64, period: u64, phase: u64) -> u64 {
    let half = (period / 2).max(1);
    let p = (t.wrapping_add(phase)) % (2 * half);
    let tri = if p < half { p } else { 2 * half - p };
    let amp = u128::from(base) * u128::from(pct) / 100;
    let v = u128::from(base) - amp + 2 * amp * u128::from(tri) / u128::from(half);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The time a cached stat was last refreshed: monotonic in `now`, which is what keeps counters
/// from going backwards even though different sections lag by different amounts.
fn cached(now: u64, period: u64, phase: u64) -> u64 {
    let phase = phase % period.max(1);
    match now.checked_sub(phase) {
        Some(n) => n / period.max(1) * period.max(1) + phase,
        None => 0,
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Deployment,
    DaemonSet,
}

#[derive(Debug)]
struct Workload {
    namespace: &'static str,
    name: &'static str,
    kind: Kind,
    containers: &'static [&'static str],
    pvc: Option<&'static str>,
    millicores: (u64, u64),
    memory_mib: (u64, u64),
}

const WORKLOADS: &[Workload] = &[
    Workload {
        namespace: "kube-system",
        name: "kube-proxy-windows",
        kind: Kind::DaemonSet,
        containers: &["kube-proxy"],
        pvc: None,
        millicores: (10, 60),
        memory_mib: (30, 60),
    },
    Workload {
        namespace: "shop",
        name: "web",
        kind: Kind::Deployment,
        containers: &["web"],
        pvc: None,
        millicores: (50, 400),
        memory_mib: (150, 400),
    },
    Workload {
        namespace: "kube-system",
        name: "calico-node-windows",
        kind: Kind::DaemonSet,
        containers: &["felix", "node"],
        pvc: None,
        millicores: (40, 200),
        memory_mib: (60, 140),
    },
    Workload {
        namespace: "default",
        name: "iis-web",
        kind: Kind::Deployment,
        containers: &["iis"],
        pvc: None,
        millicores: (20, 300),
        memory_mib: (120, 300),
    },
    Workload {
        namespace: "shop",
        name: "checkout-api",
        kind: Kind::Deployment,
        containers: &["api", "fluent-bit"],
        pvc: None,
        millicores: (60, 800),
        memory_mib: (200, 500),
    },
    Workload {
        namespace: "shop",
        name: "catalog",
        kind: Kind::Deployment,
        containers: &["catalog"],
        pvc: Some("catalog-cache"),
        millicores: (30, 300),
        memory_mib: (180, 450),
    },
    Workload {
        namespace: "monitoring",
        name: "windows-exporter",
        kind: Kind::DaemonSet,
        containers: &["windows-exporter"],
        pvc: None,
        millicores: (10, 50),
        memory_mib: (25, 50),
    },
    Workload {
        namespace: "shop",
        name: "orders-worker",
        kind: Kind::Deployment,
        containers: &["worker"],
        pvc: Some("orders-spool"),
        millicores: (20, 500),
        memory_mib: (100, 250),
    },
    Workload {
        namespace: "kube-system",
        name: "csi-smb-node-win",
        kind: Kind::DaemonSet,
        containers: &["node-driver-registrar", "smb"],
        pvc: None,
        millicores: (10, 40),
        memory_mib: (40, 90),
    },
    Workload {
        namespace: "default",
        name: "aspnet-sample",
        kind: Kind::Deployment,
        containers: &["aspnet"],
        pvc: None,
        millicores: (20, 250),
        memory_mib: (150, 350),
    },
];

/// The image a Windows node would run for a workload's container.
fn image_of(workload: &str, container: &str) -> &'static str {
    match (workload, container) {
        ("kube-proxy-windows", _) => "sigwindowstools/kube-proxy:v1.34.0-calico-hostprocess",
        ("calico-node-windows", "felix") => "docker.io/calico/node-windows:v3.30.2",
        ("calico-node-windows", _) => "docker.io/calico/cni-windows:v3.30.2",
        ("iis-web", _) => "mcr.microsoft.com/windows/servercore/iis:windowsservercore-ltsc2022",
        ("aspnet-sample", _) => {
            "mcr.microsoft.com/dotnet/framework/samples:aspnetapp-windowsservercore-ltsc2022"
        }
        ("windows-exporter", _) => "ghcr.io/prometheus-community/windows-exporter:0.31.1",
        ("csi-smb-node-win", "smb") => "mcr.microsoft.com/k8s/csi/smb-csi:v1.18.0",
        ("csi-smb-node-win", _) => {
            "mcr.microsoft.com/oss/kubernetes-csi/csi-node-driver-registrar:v2.14.0"
        }
        (_, "fluent-bit") => "docker.io/fluent/fluent-bit:4.0.3-windows-ltsc2022",
        _ => "registry.example.com/shop/app:1.8.2-windowsservercore-ltsc2022",
    }
}

/// A node runs one pod of each DaemonSet, so slots beyond the table are extra replicas of
/// Deployments.
fn workload_for_slot(slot: usize) -> usize {
    if slot < WORKLOADS.len() {
        return slot;
    }
    let deployments: Vec<usize> = (0..WORKLOADS.len())
        .filter(|&i| WORKLOADS[i].kind == Kind::Deployment)
        .collect();
    deployments[(slot - WORKLOADS.len()) % deployments.len()]
}

#[derive(Debug, Clone)]
struct ContainerSpec {
    name: &'static str,
    /// The runtime's container id (64 hex digits), as `/pods` reports it.
    id: String,
    start: u64,
    nanocores: u64,
    working_set: u64,
    rootfs: u64,
    log_rate: u64,
    phase: u64,
}

impl ContainerSpec {
    fn cpu_ns(&self, t: u64) -> u64 {
        self.nanocores.saturating_mul(t.saturating_sub(self.start))
    }

    fn nanocores_at(&self, t: u64) -> u64 {
        if t < self.start {
            return 0;
        }
        wobble(self.nanocores, 15, t, 23, self.phase)
    }

    fn working_set_at(&self, t: u64) -> u64 {
        wobble(self.working_set, 8, t, 61, self.phase)
    }

    /// Windows reports commit charge as usage; it is always above the working set.
    fn usage_at(&self, t: u64) -> u64 {
        let ws = self.working_set_at(t);
        ws + ws / 8
    }

    fn rootfs_at(&self, t: u64) -> u64 {
        wobble(self.rootfs, 2, t, 97, self.phase)
    }

    fn logs_at(&self, t: u64) -> u64 {
        (4096 + self.log_rate.saturating_mul(t.saturating_sub(self.start))).min(LOG_CAP)
    }
}

/// One incarnation of a pod: everything needed to compute its stats at any time.
#[derive(Debug, Clone)]
struct PodSpec {
    workload: usize,
    name: String,
    uid: String,
    start: u64,
    lifetime: u64,
    interface: String,
    api_volume: String,
    containers: Vec<ContainerSpec>,
    rx_rate: u64,
    tx_rate: u64,
    pvc_used: u64,
    phase: u64,
}

impl PodSpec {
    fn new(seed: u64, slot: usize, generation: u64, start: u64, rs_hash: &str) -> Self {
        let workload = workload_for_slot(slot);
        let w = &WORKLOADS[workload];
        let mut g = keyed(&[seed, slot as u64, generation]);
        let name = match w.kind {
            Kind::Deployment => format!("{}-{}-{}", w.name, rs_hash, g.safe_string(5)),
            Kind::DaemonSet => format!("{}-{}", w.name, g.safe_string(5)),
        };
        let uid = format!(
            "{}-{}-4{}-{}{}-{}",
            g.hex(8),
            g.hex(4),
            g.hex(3),
            char::from(b"89ab"[(g.next_u64() % 4) as usize]),
            g.hex(3),
            g.hex(12)
        );
        let phase = g.next_u64() % 1000;
        let millicores = g.range(w.millicores.0, w.millicores.1);
        let memory = g.range(w.memory_mib.0, w.memory_mib.1) * MIB;
        let n = w.containers.len() as u64;
        // Ids from their own stream, so adding them changed no other simulated value.
        let mut ids = keyed(&[seed, slot as u64, generation, 0x4944]);
        // The first container is the workload; sidecars get a small share.
        let containers = w
            .containers
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let share = if n == 1 {
                    100
                } else if i == 0 {
                    80
                } else {
                    20 / (n - 1)
                };
                ContainerSpec {
                    name,
                    id: ids.hex(64),
                    start: start + 1 + i as u64,
                    nanocores: millicores * 1_000_000 * share / 100,
                    working_set: memory * share / 100,
                    rootfs: g.range(40, 300) * MIB,
                    log_rate: g.range(20, 2000),
                    phase: g.next_u64() % 1000,
                }
            })
            .collect();
        PodSpec {
            workload,
            name,
            uid,
            start,
            lifetime: g.range(LIFETIME_SECS.0, LIFETIME_SECS.1),
            interface: g.guid(),
            api_volume: format!("kube-api-access-{}", g.safe_string(5)),
            containers,
            rx_rate: g.range(200, 200_000),
            tx_rate: g.range(200, 150_000),
            pvc_used: w.pvc.map_or(0, |_| g.range(100, 4000) * MIB),
            phase,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.lifetime
    }

    /// Clamps a cache refresh time so no section predates the pod or postdates `now`.
    fn at(&self, refreshed: u64, now: u64) -> u64 {
        refreshed.max(self.start).min(now)
    }

    fn cpu_ns(&self, t: u64) -> u64 {
        self.containers.iter().map(|c| c.cpu_ns(t)).sum()
    }

    fn nanocores_at(&self, t: u64) -> u64 {
        self.containers.iter().map(|c| c.nanocores_at(t)).sum()
    }

    fn working_set_at(&self, t: u64) -> u64 {
        self.containers.iter().map(|c| c.working_set_at(t)).sum()
    }

    fn usage_at(&self, t: u64) -> u64 {
        self.containers.iter().map(|c| c.usage_at(t)).sum()
    }

    fn rx(&self, t: u64) -> u64 {
        self.rx_rate.saturating_mul(t.saturating_sub(self.start))
    }

    fn tx(&self, t: u64) -> u64 {
        self.tx_rate.saturating_mul(t.saturating_sub(self.start))
    }

    fn disk_at(&self, t: u64) -> u64 {
        self.containers
            .iter()
            .map(|c| c.rootfs_at(t) + c.logs_at(t))
            .sum()
    }
}

/// Counters of pods that were replaced, so node totals keep growing across turnover.
#[derive(Debug, Clone, Default)]
struct Retired {
    cpu_ns: u64,
    rx: u64,
    tx: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    rs_hash: String,
    generation: u64,
    pod: PodSpec,
    retired: Retired,
}

#[derive(Debug, Clone)]
struct NodeSpec {
    overhead_nanocores: u64,
    system_working_set: u64,
    os_disk_used: u64,
    images_used: u64,
    rx_rate: u64,
    tx_rate: u64,
    secondary_rx_rate: u64,
    secondary_tx_rate: u64,
    page_fault_rate: u64,
}

/// One simulated Windows node whose stats are a pure function of the seed, the start time and
/// the time asked for, so two instances with the same inputs produce identical documents.
#[derive(Debug, Clone)]
pub struct SimulatedKubelet {
    seed: u64,
    started: u64,
    node: NodeSpec,
    slots: Vec<Slot>,
}

impl SimulatedKubelet {
    /// A node that booted at `started` running `pods` pods.
    pub fn new(pods: usize, seed: u64, started: SystemTime) -> Self {
        let started = unix_secs(started);
        let mut g = keyed(&[seed, u64::MAX]);
        let node = NodeSpec {
            overhead_nanocores: g.range(150, 350) * 1_000_000,
            system_working_set: g.range(2200, 2800) * MIB,
            os_disk_used: g.range(28, 36) * GIB,
            images_used: g.range(9, 16) * GIB,
            rx_rate: g.range(2_000, 20_000),
            tx_rate: g.range(1_000, 15_000),
            secondary_rx_rate: g.range(50, 500),
            secondary_tx_rate: g.range(50, 500),
            page_fault_rate: g.range(500, 5000),
        };
        let slots = (0..pods)
            .map(|slot| Self::first_generation(seed, started, slot))
            .collect();
        SimulatedKubelet {
            seed,
            started,
            node,
            slots,
        }
    }

    fn first_generation(seed: u64, started: u64, slot: usize) -> Slot {
        let w = workload_for_slot(slot);
        // Replicas of one Deployment share their ReplicaSet's hash, as in a real cluster.
        let rs_hash = keyed(&[seed, w as u64, 0x5253]).safe_string(9);
        Slot {
            pod: PodSpec::new(seed, slot, 0, started, &rs_hash),
            rs_hash,
            generation: 0,
            retired: Retired::default(),
        }
    }

    pub fn node_name(&self) -> &str {
        NODE_NAME
    }

    pub fn pod_count(&self) -> usize {
        self.slots.len()
    }

    /// Brings every slot to the pod incarnation alive at `now`. Going back in time replays
    /// from the start, which keeps the output a function of `now` alone.
    fn advance(&mut self, now: u64) {
        for i in 0..self.slots.len() {
            if now < self.slots[i].pod.start && self.slots[i].generation > 0 {
                self.slots[i] = Self::first_generation(self.seed, self.started, i);
            }
            let slot = &mut self.slots[i];
            while now >= slot.pod.end() {
                let end = slot.pod.end();
                slot.retired.cpu_ns += slot.pod.cpu_ns(end);
                slot.retired.rx += slot.pod.rx(end);
                slot.retired.tx += slot.pod.tx(end);
                slot.generation += 1;
                slot.pod = PodSpec::new(self.seed, i, slot.generation, end, &slot.rs_hash);
            }
        }
    }

    /// The `/pods` document (a `v1.PodList`, the fields kubelet-push reads and a few more) as
    /// the kubelet would answer it at `now`: the same pods, UIDs and containers as the summary,
    /// with Windows images and containerd ids.
    pub fn pods_json(&mut self, now: SystemTime) -> String {
        let now = unix_secs(now);
        self.advance(now);
        let items: Vec<serde_json::Value> = self
            .slots
            .iter()
            .map(|slot| {
                let pod = &slot.pod;
                let w = &WORKLOADS[pod.workload];
                let statuses: Vec<serde_json::Value> = pod
                    .containers
                    .iter()
                    .map(|c| {
                        let image = image_of(w.name, c.name);
                        serde_json::json!({
                            "name": c.name,
                            "image": image,
                            "imageID": format!("{}@sha256:{}", image.split(':').next().unwrap_or(image), keyed(&[self.seed, pod.workload as u64, 0x494d]).hex(64)),
                            "containerID": format!("containerd://{}", c.id),
                            "ready": now >= c.start,
                            "restartCount": 0,
                            "started": now >= c.start,
                            "state": {"running": {"startedAt": rfc3339(c.start)}},
                        })
                    })
                    .collect();
                serde_json::json!({
                    "metadata": {
                        "name": pod.name,
                        "namespace": w.namespace,
                        "uid": pod.uid,
                        "labels": {"app": w.name, "app.kubernetes.io/name": w.name},
                    },
                    "spec": {
                        "nodeName": NODE_NAME,
                        "nodeSelector": {"kubernetes.io/os": "windows"},
                        "containers": pod.containers.iter().map(|c| serde_json::json!({"name": c.name, "image": image_of(w.name, c.name)})).collect::<Vec<_>>(),
                    },
                    "status": {
                        "phase": "Running",
                        "qosClass": "Burstable",
                        "startTime": rfc3339(pod.start),
                        "containerStatuses": statuses,
                    },
                })
            })
            .collect();
        serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            .to_string()
    }

    /// The kubelet's `/metrics/probes` at `now`, in the Prometheus text format: each started
    /// container's readiness probe, run every 10 s since it started and always successful.
    pub fn probes_text(&mut self, now: SystemTime) -> String {
        let now = unix_secs(now);
        self.advance(now);
        let mut out = String::from(
            "# HELP prober_probe_total [ALPHA] Cumulative number of a liveness, readiness or startup probe for a container by result.\n# TYPE prober_probe_total counter\n",
        );
        for slot in &self.slots {
            let pod = &slot.pod;
            let namespace = WORKLOADS[pod.workload].namespace;
            for c in pod.containers.iter().filter(|c| now >= c.start) {
                out.push_str(&format!(
                    "prober_probe_total{{container=\"{}\",namespace=\"{namespace}\",pod=\"{}\",pod_uid=\"{}\",probe_type=\"Readiness\",result=\"successful\"}} {}\n",
                    c.name,
                    pod.name,
                    pod.uid,
                    (now - c.start) / 10
                ));
            }
        }
        out
    }

    /// The `/stats/summary` document as the kubelet would answer it at `now`.
    pub fn summary_json(&mut self, now: SystemTime) -> String {
        let now = unix_secs(now);
        self.advance(now);
        let node = self.node_stats(now);
        let summary = Summary {
            pods: self
                .slots
                .iter()
                .map(|s| pod_stats(&s.pod, now, &self.node))
                .collect(),
            node,
        };
        // Every field is a string or an integer, so serialization cannot fail; an empty object
        // keeps the signature infallible without a panic path.
        serde_json::to_string(&summary).unwrap_or_else(|_| String::from("{}"))
    }

    fn node_stats(&self, now: u64) -> NodeStats {
        let n = &self.node;
        let up = |t: u64| t.saturating_sub(self.started);
        let t_cpu = now;
        let t_net = cached(now, 2, 1);
        let t_fs = cached(now, 3, 0);

        let pods_cpu: u64 = self
            .slots
            .iter()
            .map(|s| s.retired.cpu_ns + s.pod.cpu_ns(t_cpu))
            .sum();
        let pods_nanocores: u64 = self.slots.iter().map(|s| s.pod.nanocores_at(t_cpu)).sum();
        let pods_ws: u64 = self.slots.iter().map(|s| s.pod.working_set_at(t_cpu)).sum();
        let pods_usage: u64 = self.slots.iter().map(|s| s.pod.usage_at(t_cpu)).sum();
        let node_cpu = n.overhead_nanocores.saturating_mul(up(t_cpu)) + pods_cpu;
        let node_nanocores = wobble(n.overhead_nanocores, 20, t_cpu, 17, 0) + pods_nanocores;
        let working_set =
            (wobble(n.system_working_set, 3, t_cpu, 83, 0) + pods_ws).min(NODE_MEMORY);
        let commit = working_set + working_set / 5;

        let pods_rx: u64 = self
            .slots
            .iter()
            .map(|s| s.retired.rx + s.pod.rx(t_net))
            .sum();
        let pods_tx: u64 = self
            .slots
            .iter()
            .map(|s| s.retired.tx + s.pod.tx(t_net))
            .sum();
        let primary = Interface {
            name: "vEthernet (Ethernet)".into(),
            rx_bytes: n.rx_rate * up(t_net) + pods_rx,
            rx_errors: 0,
            tx_bytes: n.tx_rate * up(t_net) + pods_tx,
            tx_errors: 0,
        };
        let secondary = Interface {
            name: "Ethernet 2".into(),
            rx_bytes: n.secondary_rx_rate * up(t_net),
            rx_errors: 0,
            tx_bytes: n.secondary_tx_rate * up(t_net),
            tx_errors: 0,
        };

        let disk_free = disk_free_at(n, t_fs);
        let disk_used = NODE_DISK - disk_free;
        let start_time = rfc3339(self.started);

        NodeStats {
            node_name: NODE_NAME.into(),
            system_containers: vec![
                ContainerStats {
                    name: "pods".into(),
                    start_time: start_time.clone(),
                    cpu: Some(Cpu {
                        time: rfc3339(t_cpu),
                        usage_nano_cores: None,
                        usage_core_nano_seconds: Some(pods_cpu),
                    }),
                    memory: Some(Memory {
                        time: rfc3339(t_cpu),
                        available_bytes: Some(NODE_MEMORY.saturating_sub(pods_ws)),
                        usage_bytes: Some(pods_usage),
                        working_set_bytes: Some(pods_ws),
                        ..Memory::default()
                    }),
                    rootfs: None,
                    logs: None,
                },
                ContainerStats {
                    name: "windows-global-commit-memory".into(),
                    start_time: start_time.clone(),
                    cpu: None,
                    memory: Some(Memory {
                        time: rfc3339(t_cpu),
                        available_bytes: Some((NODE_MEMORY + NODE_PAGEFILE).saturating_sub(commit)),
                        usage_bytes: Some(commit),
                        ..Memory::default()
                    }),
                    rootfs: None,
                    logs: None,
                },
            ],
            start_time,
            cpu: Cpu {
                time: rfc3339(t_cpu),
                usage_nano_cores: Some(node_nanocores),
                usage_core_nano_seconds: Some(node_cpu),
            },
            memory: Memory {
                time: rfc3339(t_cpu),
                available_bytes: Some(NODE_MEMORY - working_set),
                usage_bytes: Some(commit),
                working_set_bytes: Some(working_set),
                rss_bytes: None,
                page_faults: Some(n.page_fault_rate * up(t_cpu)),
                major_page_faults: Some(n.page_fault_rate / 50 * up(t_cpu)),
            },
            network: Network {
                time: rfc3339(t_net),
                default: primary.clone(),
                interfaces: vec![primary, secondary],
            },
            fs: Fs {
                time: rfc3339(t_fs),
                available_bytes: disk_free,
                capacity_bytes: NODE_DISK,
                used_bytes: disk_used,
                ..Fs::default()
            },
            runtime: Runtime {
                image_fs: Fs {
                    time: rfc3339(t_fs),
                    available_bytes: disk_free,
                    capacity_bytes: NODE_DISK,
                    used_bytes: n.images_used,
                    inodes_used: Some(0),
                    ..Fs::default()
                },
            },
        }
    }
}

/// Free space on the node's disk at `t`. A function of the measurement time alone, so a
/// section the kubelet reports again with the same `time` carries the same value, as the real
/// kubelet's cache does (receivers reject a repeated timestamp with a new value).
fn disk_free_at(n: &NodeSpec, t: u64) -> u64 {
    let used = wobble(n.os_disk_used, 1, t, 301, 0) + n.images_used + 4 * GIB;
    NODE_DISK - used.min(NODE_DISK)
}

fn pod_stats(pod: &PodSpec, now: u64, node: &NodeSpec) -> PodStats {
    let t_cpu = pod.at(cached(now, 2, pod.phase), now);
    let t_net = pod.at(cached(now, 3, pod.phase), now);
    let t_fs = pod.at(cached(now, 3, pod.phase + 1), now);
    // Volume stats are recomputed about once a minute and a half, so they lag the most.
    let t_vol = pod.at(cached(now, 90, pod.phase), now);
    let disk_free = disk_free_at(node, t_fs);

    let containers = pod
        .containers
        .iter()
        .map(|c| ContainerStats {
            name: c.name.into(),
            start_time: rfc3339(c.start),
            cpu: Some(Cpu {
                time: rfc3339(t_cpu),
                usage_nano_cores: Some(c.nanocores_at(t_cpu)),
                usage_core_nano_seconds: Some(c.cpu_ns(t_cpu)),
            }),
            memory: Some(Memory {
                time: rfc3339(t_cpu),
                usage_bytes: Some(c.usage_at(t_cpu)),
                working_set_bytes: Some(c.working_set_at(t_cpu)),
                ..Memory::default()
            }),
            rootfs: Some(Fs {
                time: rfc3339(t_fs),
                available_bytes: disk_free,
                capacity_bytes: NODE_DISK,
                used_bytes: c.rootfs_at(t_fs),
                ..Fs::default()
            }),
            logs: Some(Fs {
                time: rfc3339(t_fs),
                available_bytes: disk_free,
                capacity_bytes: NODE_DISK,
                used_bytes: c.logs_at(t_fs),
                inodes_used: Some(1),
                ..Fs::default()
            }),
        })
        .collect();

    let w = &WORKLOADS[pod.workload];
    let api_used = 12_288 + pod.phase % 4096;
    let mut volume = vec![Volume {
        fs: Fs {
            time: rfc3339(t_vol),
            available_bytes: disk_free_at(node, t_vol),
            capacity_bytes: NODE_DISK,
            used_bytes: api_used,
            inodes_free: Some(0),
            inodes: Some(0),
            inodes_used: Some(0),
        },
        name: pod.api_volume.clone(),
        pvc_ref: None,
    }];
    if let Some(pvc) = w.pvc {
        let used = pod.pvc_used + 4096 * t_vol.saturating_sub(pod.start);
        let used = used.min(PVC_CAPACITY);
        volume.push(Volume {
            fs: Fs {
                time: rfc3339(t_vol),
                available_bytes: PVC_CAPACITY - used,
                capacity_bytes: PVC_CAPACITY,
                used_bytes: used,
                inodes_free: Some(0),
                inodes: Some(0),
                inodes_used: Some(0),
            },
            name: "data".into(),
            pvc_ref: Some(PvcRef {
                name: pvc.into(),
                namespace: w.namespace.into(),
            }),
        });
    }

    let interface = Interface {
        name: pod.interface.clone(),
        rx_bytes: pod.rx(t_net),
        rx_errors: 0,
        tx_bytes: pod.tx(t_net),
        tx_errors: 0,
    };
    PodStats {
        pod_ref: PodRef {
            name: pod.name.clone(),
            namespace: w.namespace.into(),
            uid: pod.uid.clone(),
        },
        start_time: rfc3339(pod.start),
        containers,
        cpu: Cpu {
            time: rfc3339(t_cpu),
            usage_nano_cores: Some(pod.nanocores_at(t_cpu)),
            usage_core_nano_seconds: Some(pod.cpu_ns(t_cpu)),
        },
        memory: Memory {
            time: rfc3339(t_cpu),
            usage_bytes: Some(pod.usage_at(t_cpu)),
            working_set_bytes: Some(pod.working_set_at(t_cpu)),
            ..Memory::default()
        },
        network: Network {
            time: rfc3339(t_net),
            default: interface.clone(),
            interfaces: vec![interface],
        },
        volume,
        ephemeral_storage: Fs {
            time: rfc3339(t_fs),
            available_bytes: disk_free,
            capacity_bytes: NODE_DISK,
            used_bytes: pod.disk_at(t_fs) + api_used,
            ..Fs::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::HashMap;
    use std::time::Duration;
    const T0: u64 = 1_795_600_807; // 2026-11-25T10:00:07Z

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn parse(doc: &str) -> Value {
        serde_json::from_str(doc).expect("summary is valid JSON")
    }

    fn u(v: &Value, path: &[&str]) -> u64 {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        cur.as_u64()
            .unwrap_or_else(|| panic!("{path:?} is not a u64: {cur}"))
    }

    fn pods_by_name(v: &Value) -> HashMap<String, Value> {
        v["pods"]
            .as_array()
            .expect("pods array")
            .iter()
            .map(|p| (p["podRef"]["name"].as_str().unwrap().to_string(), p.clone()))
            .collect()
    }

    /// Parses what `rfc3339` writes, independently of it, into seconds since the epoch.
    fn parse_rfc3339(s: &str) -> Option<u64> {
        let b = s.as_bytes();
        if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
            return None;
        }
        if b[16] != b':' || b[19] != b'Z' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        // Days from civil, the inverse algorithm.
        let (y, mo, d) = (y as i64, mo as i64, d as i64);
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some(days as u64 * 86_400 + h * 3600 + mi * 60 + se)
    }

    fn collect_times(v: &Value, key: Option<&str>, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| collect_times(v, Some(k), out)),
            Value::Array(a) => a.iter().for_each(|v| collect_times(v, key, out)),
            Value::String(s) if matches!(key, Some("time" | "startTime")) => {
                out.push((key.unwrap_or_default().to_string(), s.clone()))
            }
            _ => {}
        }
    }

    /// `/pods` lists the summary's pods by UID with the same containers, each with an image
    /// and a containerd id, through churn (a day later every pod has been replaced).
    #[test]
    fn pods_document_describes_the_summarys_pods() {
        let mut sim = SimulatedKubelet::new(12, 7, at(1_700_000_000));
        for t in [1_700_000_100, 1_700_086_400] {
            let summary = parse(&sim.summary_json(at(t)));
            let list = parse(&sim.pods_json(at(t)));
            let items = list["items"].as_array().unwrap();
            assert_eq!(items.len(), 12);
            for (name, pod) in pods_by_name(&summary) {
                let item = items
                    .iter()
                    .find(|i| i["metadata"]["uid"] == pod["podRef"]["uid"])
                    .unwrap_or_else(|| panic!("{name} not in /pods"));
                assert_eq!(item["metadata"]["name"].as_str(), Some(name.as_str()));
                assert_eq!(item["metadata"]["namespace"], pod["podRef"]["namespace"]);
                let statuses = item["status"]["containerStatuses"].as_array().unwrap();
                let containers = pod["containers"].as_array().unwrap();
                assert_eq!(statuses.len(), containers.len());
                for c in containers {
                    let st = statuses.iter().find(|s| s["name"] == c["name"]).unwrap();
                    let id = st["containerID"].as_str().unwrap();
                    let hex = id.strip_prefix("containerd://").unwrap();
                    assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
                    assert!(!st["image"].as_str().unwrap().is_empty());
                    assert_eq!(st["state"]["running"]["startedAt"], c["startTime"]);
                }
            }
        }
    }

    #[test]
    fn summary_has_kubelet_shape_and_requested_pods() {
        let mut sim = SimulatedKubelet::new(14, 7, at(T0));
        assert_eq!(sim.pod_count(), 14);
        let v = parse(&sim.summary_json(at(T0 + 30)));
        let node = &v["node"];
        assert_eq!(node["nodeName"], "demo-win-node");
        assert_eq!(node["startTime"], "2026-11-25T10:00:07Z");
        assert_eq!(node["network"]["name"], "vEthernet (Ethernet)");
        assert_eq!(node["network"]["interfaces"][0], {
            let mut first = node["network"].clone();
            let obj = first.as_object_mut().unwrap();
            obj.remove("time");
            obj.remove("interfaces");
            first
        });
        assert_eq!(node["network"]["interfaces"][1]["name"], "Ethernet 2");
        assert_eq!(node["systemContainers"][0]["name"], "pods");
        assert_eq!(
            node["systemContainers"][1]["name"],
            "windows-global-commit-memory"
        );
        assert_eq!(u(node, &["runtime", "imageFs", "inodesUsed"]), 0);
        for key in ["usageNanoCores", "usageCoreNanoSeconds"] {
            assert!(u(node, &["cpu", key]) > 0);
        }

        let pods = v["pods"].as_array().unwrap();
        assert_eq!(pods.len(), 14);
        let mut names: Vec<&str> = pods
            .iter()
            .map(|p| p["podRef"]["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 14, "pod names are unique");
        let namespaces: std::collections::BTreeSet<&str> = pods
            .iter()
            .map(|p| p["podRef"]["namespace"].as_str().unwrap())
            .collect();
        assert!(namespaces.contains("default") && namespaces.contains("shop"));
        assert!(namespaces.contains("kube-system"));
        let web = pods
            .iter()
            .map(|p| p["podRef"]["name"].as_str().unwrap())
            .find(|n| n.starts_with("web-"))
            .unwrap();
        let parts: Vec<&str> = web.split('-').collect();
        assert_eq!((parts.len(), parts[1].len(), parts[2].len()), (3, 9, 5));

        let mut pvcs = 0;
        let mut pod_cpu_sum = 0;
        for p in pods {
            let n = p["containers"].as_array().unwrap().len();
            assert!(n == 1 || n == 2, "{n} containers");
            let containers_cpu: u64 = p["containers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| u(c, &["cpu", "usageCoreNanoSeconds"]))
                .sum();
            assert_eq!(containers_cpu, u(p, &["cpu", "usageCoreNanoSeconds"]));
            pod_cpu_sum += containers_cpu;
            assert_eq!(p["network"]["interfaces"].as_array().unwrap().len(), 1);
            assert_eq!(p["network"]["name"].as_str().unwrap().len(), 36);
            let vols = p["volume"].as_array().unwrap();
            assert!(vols[0]["name"]
                .as_str()
                .unwrap()
                .starts_with("kube-api-access-"));
            for vol in vols {
                for k in ["inodesFree", "inodes", "inodesUsed", "usedBytes"] {
                    assert!(vol[k].is_u64(), "{k} in {vol}");
                }
                if let Some(r) = vol.get("pvcRef") {
                    pvcs += 1;
                    assert_eq!(r["namespace"], p["podRef"]["namespace"]);
                }
            }
            assert!(u(p, &["ephemeral-storage", "usedBytes"]) > 0);
        }
        assert!(pvcs >= 2, "some pods have a PVC");
        assert!(u(node, &["cpu", "usageCoreNanoSeconds"]) > pod_cpu_sum);
        assert!(
            u(
                &node["systemContainers"][0],
                &["cpu", "usageCoreNanoSeconds"]
            ) >= pod_cpu_sum
        );
    }

    #[test]
    fn counters_strictly_increase_over_ten_seconds() {
        let mut sim = SimulatedKubelet::new(12, 42, at(T0));
        let a = parse(&sim.summary_json(at(T0 + 3)));
        let b = parse(&sim.summary_json(at(T0 + 13)));
        for path in [
            &["cpu", "usageCoreNanoSeconds"][..],
            &["memory", "pageFaults"],
            &["network", "rxBytes"],
            &["network", "txBytes"],
        ] {
            assert!(u(&b["node"], path) > u(&a["node"], path), "node {path:?}");
        }
        let (pa, pb) = (pods_by_name(&a), pods_by_name(&b));
        // Lifetimes are at least 20 s, so every pod survives this window.
        assert_eq!(pa.len(), 12);
        for (name, p) in &pa {
            let q = &pb[name];
            for path in [
                &["cpu", "usageCoreNanoSeconds"][..],
                &["network", "rxBytes"],
                &["network", "txBytes"],
            ] {
                assert!(u(q, path) > u(p, path), "{name} {path:?}");
            }
        }
    }

    #[test]
    fn counters_never_decrease_across_turnover() {
        let mut sim = SimulatedKubelet::new(10, 3, at(T0));
        let mut prev: Option<Value> = None;
        let mut prev_pods: HashMap<String, Value> = HashMap::new();
        // Half-second steps exercise the differently cached section times.
        for step in 0..800u64 {
            let now = UNIX_EPOCH + Duration::from_millis(T0 * 1000 + step * 500);
            let v = parse(&sim.summary_json(now));
            if let Some(p) = &prev {
                for path in [
                    &["cpu", "usageCoreNanoSeconds"][..],
                    &["network", "rxBytes"],
                ] {
                    assert!(u(&v["node"], path) >= u(&p["node"], path), "step {step}");
                }
            }
            let pods = pods_by_name(&v);
            assert_eq!(pods.len(), 10);
            for (name, p) in &pods {
                if let Some(old) = prev_pods.get(name) {
                    let path = &["cpu", "usageCoreNanoSeconds"];
                    assert!(u(p, path) >= u(old, path), "{name} step {step}");
                }
            }
            prev = Some(v);
            prev_pods = pods;
        }
    }

    #[test]
    fn pods_are_replaced_after_their_lifetime() {
        let mut sim = SimulatedKubelet::new(8, 11, at(T0));
        let before = parse(&sim.summary_json(at(T0 + 1)));
        let first_end = sim.slots[0].pod.end();
        let first_name = sim.slots[0].pod.name.clone();
        let after_one = parse(&sim.summary_json(at(first_end)));
        let replacement = &sim.slots[0].pod;
        assert_ne!(replacement.name, first_name);
        assert_eq!(replacement.start, first_end);
        let p = &pods_by_name(&after_one)[&replacement.name];
        assert_eq!(
            p["startTime"].as_str().map(parse_rfc3339),
            Some(Some(first_end))
        );
        // Same workload: for a Deployment the ReplicaSet hash survives, only the suffix changes.
        let stem = |n: &str| n.rsplit_once('-').map(|(s, _)| s.to_string());
        assert_eq!(stem(&replacement.name), stem(&first_name));

        // Every first-generation lifetime is at most 120 s.
        let later = parse(&sim.summary_json(at(T0 + 121)));
        let (b, l) = (pods_by_name(&before), pods_by_name(&later));
        assert_eq!(l.len(), 8);
        assert!(b.keys().all(|k| !l.contains_key(k)), "all pods replaced");
    }

    #[test]
    fn same_seed_and_times_give_identical_output() {
        let times = [T0 + 5, T0 + 17, T0 + 260, T0 + 261];
        let mut a = SimulatedKubelet::new(9, 99, at(T0));
        let mut b = SimulatedKubelet::new(9, 99, at(T0));
        let mut c = SimulatedKubelet::new(9, 100, at(T0));
        for t in times {
            let (da, db, dc) = (
                a.summary_json(at(t)),
                b.summary_json(at(t)),
                c.summary_json(at(t)),
            );
            assert_eq!(da, db);
            assert_ne!(da, dc, "another seed gives another node");
        }
        // The document depends on time only, not on the history of calls.
        let mut fresh = SimulatedKubelet::new(9, 99, at(T0));
        assert_eq!(
            fresh.summary_json(at(T0 + 261)),
            a.summary_json(at(T0 + 261))
        );
        assert_eq!(a.summary_json(at(T0 + 5)), fresh.summary_json(at(T0 + 5)));
    }

    #[test]
    fn times_are_rfc3339_whole_seconds_and_plausible() {
        let mut sim = SimulatedKubelet::new(12, 5, at(T0));
        let now = T0 + 400;
        let v = parse(&sim.summary_json(UNIX_EPOCH + Duration::from_millis(now * 1000 + 750)));
        let mut times = Vec::new();
        collect_times(&v, None, &mut times);
        assert!(times.len() > 100);
        let mut lagging = 0;
        for (key, s) in &times {
            let secs = parse_rfc3339(s).unwrap_or_else(|| panic!("bad time {s:?}"));
            assert_eq!(rfc3339(secs), *s);
            assert!(secs <= now, "{key} {s} is in the future");
            if key == "time" {
                assert!(now - secs < 90, "{s} is too old");
                lagging += usize::from(secs < now);
            } else {
                assert!(secs >= T0);
            }
        }
        assert!(lagging > 0, "some sections come from a cache");
    }
}
