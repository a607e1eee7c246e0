//! The `process_*` metrics every Prometheus client library exposes, read from the operating
//! system each time `/metrics` is encoded (and so each time the self-metrics are pushed):
//!
//! | metric | Linux | Windows |
//! |---|---|---|
//! | `process_cpu_seconds_total` | utime + stime of `/proc/self/stat` | user + kernel time (`GetProcessTimes`) |
//! | `process_resident_memory_bytes` | `VmRSS` of `/proc/self/status` | the working set (`GetProcessMemoryInfo`) |
//! | `process_open_fds` | the entries of `/proc/self/fd` | open handles (`GetProcessHandleCount`): files, sockets, events, threads; left out when it says 0, as Wine's stub does |
//! | `process_start_time_seconds` | `starttime` of `/proc/self/stat` + `btime` of `/proc/stat` (read once) | creation time (`GetProcessTimes`) |
//!
//! A value the system does not give is left out (never sent as 0); elsewhere (macOS, the BSDs)
//! there are none.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of the process's own numbers; `None` where the system did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads the process's numbers now.
pub fn read() -> ProcessStats {
    imp::read()
}

/// Encodes [`read`]'s numbers on each scrape; registered unprefixed, beside `kubelet_push_*`.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = read();
        if let Some(cpu) = stats.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes (the working set on Windows)",
                stats.resident_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors (open handles on Windows)",
                stats.open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                stats.start_time_seconds,
            ),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

/// The fields of `/proc/self/stat` after `pid (comm)`: the command may hold spaces and
/// parentheses, so split after its last `)`. Index 0 is `state`, field 3 of proc(5). (Pure, so
/// its test runs everywhere, the Windows test run included.)
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{stat_fields, ProcessStats};

    /// Clock ticks per second of `/proc/*/stat`: 100 on every Linux architecture's user ABI
    /// (`USER_HZ`; Prometheus's procfs assumes the same).
    const USER_HZ: f64 = 100.0;

    pub fn read() -> ProcessStats {
        let stat = read_small("/proc/self/stat");
        let fields = stat.as_deref().and_then(stat_fields);
        let tick = |i: usize| -> Option<f64> {
            fields
                .as_ref()
                .and_then(|f| f.get(i))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|t| t as f64 / USER_HZ)
        };
        // Field numbers as proc(5) counts them (utime is 14), less the two before the rest.
        let cpu_seconds = tick(14 - 3).zip(tick(15 - 3)).map(|(u, s)| u + s);
        let start_time_seconds = tick(22 - 3)
            .zip(boot_time())
            .map(|(since, boot)| boot + since);
        ProcessStats {
            cpu_seconds,
            resident_memory_bytes: resident_bytes(),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            start_time_seconds,
        }
    }

    /// The boot time, read once: `/proc/stat` is the largest of the files read here (a line
    /// per CPU, a count per interrupt) and the kernel writes all of it for each read, while
    /// `btime` never changes in the life of the process.
    fn boot_time() -> Option<f64> {
        static BOOT: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
        *BOOT.get_or_init(read_boot_time)
    }

    fn read_boot_time() -> Option<f64> {
        let stat = read_small("/proc/stat")?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|v| v as f64)
    }

    /// A `/proc` file read whole with `read` calls only: `std::fs::read_to_string` first
    /// asks the file's size (a `statx`), which a `/proc` file reports as 0 anyway. These are
    /// read on every push of the self-metrics.
    fn read_small(path: &str) -> Option<String> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).ok()?;
        let mut bytes = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        String::from_utf8(bytes).ok()
    }

    fn resident_bytes() -> Option<f64> {
        let status = read_small("/proc/self/status")?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib as f64 * 1024.0)
    }
}

// The one place the crate calls the operating system directly: four Win32 functions that the
// standard library does not wrap, on the current process's pseudo-handle (which needs no
// closing), each writing into a local it is given the size of. A crate that wraps them safely
// (sysinfo) would bring the `windows` crate and a whole system model for four numbers.
#[cfg(windows)]
#[allow(unsafe_code)]
mod imp {
    use super::ProcessStats;
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, GetProcessHandleCount, GetProcessTimes,
    };

    /// 100 ns intervals between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
    const UNIX_EPOCH_AS_FILETIME: u64 = 116_444_736_000_000_000;

    fn ticks(t: &FILETIME) -> u64 {
        (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
    }

    pub fn read() -> ProcessStats {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: GetCurrentProcess returns a pseudo-handle, valid for the process's life and
        // never closed; the four out-pointers are live locals of the right type.
        let times_ok = unsafe {
            GetProcessTimes(
                GetCurrentProcess(),
                &mut created,
                &mut exited,
                &mut kernel,
                &mut user,
            )
        } != 0;
        let mut counters = PROCESS_MEMORY_COUNTERS {
            cb: 0,
            PageFaultCount: 0,
            PeakWorkingSetSize: 0,
            WorkingSetSize: 0,
            QuotaPeakPagedPoolUsage: 0,
            QuotaPagedPoolUsage: 0,
            QuotaPeakNonPagedPoolUsage: 0,
            QuotaNonPagedPoolUsage: 0,
            PagefileUsage: 0,
            PeakPagefileUsage: 0,
        };
        let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        counters.cb = size;
        // SAFETY: as above; `counters` is a live local whose size is passed in `size`.
        let memory_ok =
            unsafe { K32GetProcessMemoryInfo(GetCurrentProcess(), &mut counters, size) } != 0;
        let mut handles: u32 = 0;
        // SAFETY: as above; `handles` is a live local.
        let handles_ok = unsafe { GetProcessHandleCount(GetCurrentProcess(), &mut handles) } != 0;
        ProcessStats {
            cpu_seconds: times_ok.then(|| (ticks(&kernel) + ticks(&user)) as f64 / 1e7),
            resident_memory_bytes: memory_ok.then_some(counters.WorkingSetSize as f64),
            // A live process always holds handles (its threads' at least): 0 is Wine's stub
            // answering, not a count, so it is left out rather than sent.
            open_fds: (handles_ok && handles > 0).then_some(f64::from(handles)),
            start_time_seconds: times_ok
                .then(|| ticks(&created).saturating_sub(UNIX_EPOCH_AS_FILETIME) as f64 / 1e7),
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    pub fn read() -> super::ProcessStats {
        super::ProcessStats::default()
    }
}

#[cfg(all(test, any(target_os = "linux", windows)))]
mod tests {
    use super::*;

    /// Plausible values, not just some: run under Wine for Windows (`.ci/windows-tests.sh`).
    #[test]
    fn the_process_numbers_are_plausible() {
        // Burn CPU until the process's own counter has moved past a tick (however little CPU
        // a loaded machine gives this thread per second of wall time), bounded in work.
        let mut x: u64 = 1;
        for _ in 0..100_000 {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
            if read().cpu_seconds.is_some_and(|c| c > 0.05) {
                break;
            }
        }
        std::hint::black_box(x);
        let file = std::fs::File::open(std::env::current_exe().expect("exe")).expect("open");
        let stats = read();
        drop(file);
        let cpu = stats.cpu_seconds.expect("cpu");
        assert!(cpu > 0.0 && cpu < 1e6, "cpu {cpu}");
        let rss = stats.resident_memory_bytes.expect("rss");
        assert!(rss > 1e6 && rss < 1e11, "rss {rss}");
        // Wine answers GetProcessHandleCount with 0 (a stub), which is left out: under Wine
        // the count is absent, on Windows and Linux it must be there.
        if cfg!(unix) || stats.open_fds.is_some() || !under_wine() {
            let fds = stats.open_fds.expect("fds");
            assert!((1.0..1e6).contains(&fds), "fds {fds}");
        }
        let start = stats.start_time_seconds.expect("start");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "start {start}, now {now}"
        );
    }

    /// Whether this runs under Wine: Wine passes the Unix environment on, and
    /// `.ci/wine/runner` sets `WINEPREFIX`.
    fn under_wine() -> bool {
        cfg!(windows) && std::env::var_os("WINEPREFIX").is_some()
    }

    #[test]
    fn a_command_with_parentheses_and_spaces() {
        let fields = stat_fields("42 (a) b (c) S 1 2 3").unwrap_or_default();
        assert_eq!(fields, ["S", "1", "2", "3"]);
    }

    #[test]
    fn the_collector_writes_the_four_families() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for family in [
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
    }
}
