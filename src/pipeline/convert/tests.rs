//! Tests of `convert`: summaries in, samples (names, labels, values, timestamps) out.

use super::*;
use crate::kubelet::summary::parse;

fn run(doc: &str, max_age_ms: i64) -> Vec<(String, i64, f64)> {
    run_with(doc, max_age_ms, Context::default()).0
}

fn run_with(
    doc: &str,
    max_age_ms: i64,
    context: Context<'_>,
) -> (Vec<(String, i64, f64)>, Converted) {
    let s = parse(doc.as_bytes()).unwrap();
    let mut out = Vec::new();
    let converted = convert(
        &s,
        context,
        999_999_999_000,
        max_age_ms,
        &mut |s: &Sample<'_>| {
            out.push({
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .chain(s.family)
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                (
                    format!("{}{{{}}}", s.name, labels.join(",")),
                    s.timestamp_ms,
                    s.value,
                )
            })
        },
    );
    (out, converted)
}

#[test]
fn timestamp_rule_uses_own_time_up_to_max_age() {
    let doc = r#"{"node":{"nodeName":"n",
            "cpu":{"time":"2020-01-01T00:02:00Z","usageCoreNanoSeconds":1500000000},
            "memory":{"time":"2020-01-01T00:00:00Z","workingSetBytes":7},
            "fs":{"time":"2020-01-01T00:00:00Z","usedBytes":1},
            "startTime":"2019-12-31T00:00:00Z"}}"#;
    let newest = 1_577_836_920_000; // 00:02:00
    let at_limit = run(doc, 120_000);
    assert!(at_limit.contains(&(
        "node_memory_working_set_bytes{metrics_path=/metrics/resource}".into(),
        newest - 120_000,
        7.0
    )));
    let past_limit = run(doc, 119_999);
    assert!(past_limit.contains(&(
        "node_memory_working_set_bytes{metrics_path=/metrics/resource}".into(),
        newest,
        7.0
    )));
    assert!(past_limit.contains(&(
        "node_cpu_usage_seconds_total{metrics_path=/metrics/resource}".into(),
        newest,
        1.5
    )));
    assert!(past_limit.contains(&("node_start_time_seconds{}".into(), newest, 1_577_750_400.0)));
}

#[test]
fn summary_without_times_uses_poll_time() {
    let out = run(r#"{"node":{"fs":{"usedBytes":5}}}"#, 120_000);
    assert_eq!(
        out,
        vec![("node_fs_used_bytes{}".into(), 999_999_999_000, 5.0)]
    );
}

#[test]
fn missing_values_produce_no_samples() {
    let doc = r#"{"node":{"cpu":{"time":"2020-01-01T00:00:00Z"},"memory":null,"network":{"time":"2020-01-01T00:00:00Z","interfaces":[]}},
            "pods":[{"podRef":{"namespace":"ns"}},{"podRef":{"name":"p","namespace":"ns"},"containers":[{"name":"c"}]}]}"#;
    assert!(run(doc, 120_000).is_empty());
}

#[test]
fn unnamed_interface_kept_only_when_alone() {
    let alone = r#"{"node":{"network":{"time":"2020-01-01T00:00:00Z","interfaces":[{"name":"","rxBytes":3}]}}}"#;
    let out = run(alone, 120_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "node_network_receive_bytes_total{interface=}");
    let crowd = r#"{"node":{"network":{"time":"2020-01-01T00:00:00Z","name":"","rxBytes":9,
            "interfaces":[{"name":"","rxBytes":3},{"name":"eth0","rxBytes":3}]}}}"#;
    let out = run(crowd, 120_000);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "node_network_receive_bytes_total{interface=eth0}");
}

#[test]
fn accelerators_and_memory_failures() {
    let doc = r#"{"pods":[{"podRef":{"name":"p","namespace":"ns"},"containers":[{"name":"c",
            "memory":{"time":"2020-01-01T00:00:00Z","pageFaults":10,"majorPageFaults":2},
            "accelerators":[{"make":"nvidia","model":"tesla-t4","id":"GPU-1","memoryTotal":16,"memoryUsed":4,"dutyCycle":37}]}]}]}"#;
    let out = run(doc, 120_000);
    let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
            names,
            vec![
                "container_memory_failures_total{namespace=ns,pod=p,container=c,scope=container,failure_type=pgfault,metrics_path=/metrics/cadvisor}",
                "container_memory_failures_total{namespace=ns,pod=p,container=c,scope=container,failure_type=pgmajfault,metrics_path=/metrics/cadvisor}",
                "container_accelerator_memory_used_bytes{namespace=ns,pod=p,container=c,make=nvidia,model=tesla-t4,acc_id=GPU-1,metrics_path=/metrics/cadvisor}",
                "container_accelerator_memory_total_bytes{namespace=ns,pod=p,container=c,make=nvidia,model=tesla-t4,acc_id=GPU-1,metrics_path=/metrics/cadvisor}",
                "container_accelerator_duty_cycle{namespace=ns,pod=p,container=c,make=nvidia,model=tesla-t4,acc_id=GPU-1,metrics_path=/metrics/cadvisor}",
            ]
        );
    assert_eq!(
        out.iter().map(|o| o.2).collect::<Vec<_>>(),
        vec![10.0, 2.0, 4.0, 16.0, 37.0]
    );
}

#[test]
fn pvc_series_carry_the_claim_not_the_pod() {
    let doc = r#"{"pods":[{"podRef":{"name":"p","namespace":"ns"},"volume":[
            {"time":"2020-01-01T00:00:00Z","name":"data","usedBytes":5,"pvcRef":{"name":"claim","namespace":"other"}}]}]}"#;
    let out = run(doc, 120_000);
    let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
            names,
            vec![
                "pod_volume_used_bytes{namespace=ns,pod=p,volume=data}",
                "kubelet_volume_stats_used_bytes{namespace=other,persistentvolumeclaim=claim,metrics_path=/metrics}",
            ]
        );
}

/// Metadata labels: `image` and `name` for a container the answer describes, pod labels
/// on every series of the pod, and a count of what it could not describe.
#[test]
fn metadata_labels_and_what_they_cannot_describe() {
    use crate::kubelet::pods::{self, PodMetadata};
    let answered_ms = 1_577_836_800_000; // 2020-01-01T00:00:00Z
    let mut meta = PodMetadata::new(vec!["app.kubernetes.io/name".into()]);
    meta.replace(
            &pods::parse(
                br#"{"items":[{"metadata":{"uid":"u1","labels":{"app.kubernetes.io/name":"web","x":"y"}},
                "status":{"containerStatuses":[
                  {"name":"old","image":"img:1","containerID":"containerd://aaa"},
                  {"name":"new","image":"img:2","containerID":"containerd://bbb"},
                  {"name":"fresh","image":"img:3","containerID":"containerd://ccc"}]}}]}"#,
            )
            .unwrap(),
            answered_ms,
            std::time::Instant::now(),
        );
    let pod_labels = [(
        "app.kubernetes.io/name".to_owned(),
        "label_app_kubernetes_io_name".to_owned(),
    )];
    let context = Context {
        pods: Some(&meta),
        pod_labels: &pod_labels,
    };
    let doc = r#"{"pods":[
            {"podRef":{"name":"p","namespace":"ns","uid":"u1"},
             "memory":{"time":"2020-01-01T00:01:00Z","workingSetBytes":3},
             "containers":[
              {"name":"old","startTime":"2019-12-31T00:00:00Z","memory":{"time":"2020-01-01T00:01:00Z","workingSetBytes":1}},
              {"name":"new","startTime":"2020-01-01T00:00:01Z","memory":{"time":"2020-01-01T00:01:00Z","workingSetBytes":2}},
              {"name":"fresh","startTime":"2019-12-31T23:59:58Z","logs":{"time":"2020-01-01T00:01:00Z","usedBytes":4}},
              {"name":"unlisted","memory":{"time":"2020-01-01T00:01:00Z","workingSetBytes":5}}]},
            {"podRef":{"name":"q","namespace":"ns","uid":"u2"},"memory":{"time":"2020-01-01T00:01:00Z","workingSetBytes":6}}]}"#;
    let (out, converted) = run_with(doc, 120_000, context);
    let names: Vec<&str> = out.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(
            names,
            vec![
                "pod_memory_working_set_bytes{namespace=ns,pod=p,label_app_kubernetes_io_name=web,metrics_path=/metrics/resource}",
                "container_memory_working_set_bytes{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=old,image=img:1,name=aaa,metrics_path=/metrics/cadvisor}",
                "container_start_time_seconds{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=old,image=img:1,name=aaa,metrics_path=/metrics/cadvisor}",
                // Started after the answer: it may be a new instance with another id.
                "container_memory_working_set_bytes{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=new,metrics_path=/metrics/cadvisor}",
                "container_start_time_seconds{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=new,metrics_path=/metrics/cadvisor}",
                // Started just before it: labelled, and checked again.
                "container_start_time_seconds{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=fresh,image=img:3,name=ccc,metrics_path=/metrics/cadvisor}",
                "container_logs_usage_bytes{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=fresh,image=img:3,name=ccc}",
                "container_memory_working_set_bytes{namespace=ns,pod=p,label_app_kubernetes_io_name=web,container=unlisted,metrics_path=/metrics/cadvisor}",
                "pod_memory_working_set_bytes{namespace=ns,pod=q,metrics_path=/metrics/resource}",
            ]
        );
    assert_eq!(converted.undescribed, 4, "new, fresh, unlisted and pod q");
    let (_, without) = run_with(doc, 120_000, Context::default());
    assert_eq!(
        without.undescribed, 0,
        "nothing to describe without metadata"
    );
}

/// Counters carry the start time of the node, system container, pod or container they
/// count for; gauges, and counters whose start is not before their timestamp, carry none.
#[test]
fn counters_carry_the_start_of_what_they_count_for() {
    let doc = r#"{"node":{"startTime":"2020-01-01T00:00:00Z",
            "cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9,"psi":{"some":{"total":5}}},
            "memory":{"time":"2020-01-02T00:00:00Z","pageFaults":3,"workingSetBytes":1},
            "network":{"time":"2020-01-02T00:00:00Z","interfaces":[{"name":"eth0","rxBytes":7}]},
            "systemContainers":[{"name":"kubelet","startTime":"2020-01-01T00:00:30Z",
              "cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9}}]},
          "pods":[{"podRef":{"name":"p","namespace":"ns"},"startTime":"2020-01-01T00:01:00Z",
            "cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9},
            "network":{"time":"2020-01-02T00:00:00Z","interfaces":[{"name":"eth0","txBytes":9}]},
            "containers":[
              {"name":"c","startTime":"2020-01-01T00:02:00Z",
               "cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9},
               "memory":{"time":"2020-01-02T00:00:00Z","pageFaults":4,"workingSetBytes":2}},
              {"name":"same","startTime":"2020-01-02T00:00:00Z",
               "cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9}},
              {"name":"unknown","cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9}}]},
           {"podRef":{"name":"q","namespace":"ns"},
            "cpu":{"time":"2020-01-02T00:00:00Z","usageCoreNanoSeconds":1e9}}]}"#;
    let s = parse(doc.as_bytes()).unwrap();
    let mut out = Vec::new();
    convert(&s, Context::default(), 0, 120_000, &mut |x: &Sample<'_>| {
        let who = x
            .labels
            .iter()
            .find(|(n, _)| *n == "container" || *n == "pod" || *n == "system_container")
            .map_or("", |l| l.1);
        out.push((x.name.to_owned(), who.to_owned(), x.start_ms));
    });
    let t0 = 1_577_836_800_000; // 2020-01-01T00:00:00Z
    let expected = [
        ("node_cpu_usage_seconds_total", "", t0),
        ("node_pressure_cpu_waiting_seconds_total", "", t0),
        ("node_memory_working_set_bytes", "", 0),
        ("node_memory_page_faults_total", "", t0),
        ("node_network_receive_bytes_total", "", t0),
        ("node_start_time_seconds", "", 0),
        (
            "node_system_container_cpu_usage_seconds_total",
            "kubelet",
            t0 + 30_000,
        ),
        ("pod_cpu_usage_seconds_total", "p", t0 + 60_000),
        ("pod_start_time_seconds", "p", 0),
        ("container_network_transmit_bytes_total", "p", t0 + 60_000),
        ("container_cpu_usage_seconds_total", "p", t0 + 120_000),
        ("container_memory_working_set_bytes", "p", 0),
        ("container_memory_failures_total", "p", t0 + 120_000),
        ("container_start_time_seconds", "p", 0),
        // Started at the sample's own time: no start (a zero there would collide).
        ("container_cpu_usage_seconds_total", "p", 0),
        ("container_start_time_seconds", "p", 0),
        // No startTime in the summary.
        ("container_cpu_usage_seconds_total", "p", 0),
        ("pod_cpu_usage_seconds_total", "q", 0),
    ];
    let got: Vec<(&str, &str, i64)> = out
        .iter()
        .map(|(n, w, st)| (n.as_str(), w.as_str(), *st))
        .collect();
    assert_eq!(got, expected);
}

/// On every captured summary: only counters carry a start, always before their sample;
/// on the 1.34 capture every container and pod CPU counter has one.
#[test]
fn only_counters_carry_a_start_and_it_precedes_the_sample() {
    use crate::metadata::{family, MetricType};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/summaries");
    let mut with_start = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let s = parse(&bytes).unwrap();
        let is_134 = path.to_string_lossy().contains("1_34");
        convert(&s, Context::default(), 0, 120_000, &mut |x: &Sample<'_>| {
            let kind = family(x.name).map(|f| f.kind);
            if x.start_ms != 0 {
                with_start += 1;
                assert_eq!(kind, Some(MetricType::Counter), "{}", x.name);
                assert!(x.start_ms < x.timestamp_ms, "{}", x.name);
            }
            if is_134 && x.name.ends_with("_cpu_usage_seconds_total") {
                assert_ne!(x.start_ms, 0, "{} {:?}", x.name, x.labels);
            }
        });
    }
    assert!(with_start > 100, "{with_start}");
}

/// A section past the horizon is not the reference: the others keep their own times (and
/// the timeless values the newest of those); its own samples keep their future time for
/// the series tracker to refuse. Negative counters are left out and counted.
#[test]
fn times_past_the_horizon_and_negative_counters() {
    let doc = r#"{"node":{"startTime":"2019-12-31T00:00:00Z",
            "cpu":{"time":"9999-12-31T23:59:59Z","usageCoreNanoSeconds":1e9},
            "memory":{"time":"2020-01-01T00:01:00Z","workingSetBytes":7,"pageFaults":-3},
            "fs":{"time":"2020-01-01T00:00:00Z","usedBytes":-1}}}"#;
    let s = parse(doc.as_bytes()).unwrap();
    let minute = 1_577_836_860_000; // 2020-01-01T00:01:00Z
    let mut out = Vec::new();
    let converted = convert_until(
        &s,
        Context::default(),
        0,
        120_000,
        minute + 1,
        &mut |x: &Sample<'_>| out.push((x.name, x.timestamp_ms, x.value)),
    );
    assert_eq!(
        out,
        vec![
            ("node_cpu_usage_seconds_total", 253_402_300_799_000, 1.0),
            ("node_memory_working_set_bytes", minute, 7.0),
            ("node_fs_used_bytes", minute - 60_000, -1.0),
            ("node_start_time_seconds", minute, 1_577_750_400.0),
        ]
    );
    assert_eq!(converted.newest, Some(minute));
    assert_eq!(converted.ahead_ms, Some(253_402_300_799_000));
    assert_eq!(
        converted.negative_counters, 1,
        "pageFaults; a gauge may be negative"
    );
    let everything_ahead = convert_until(&s, Context::default(), 0, 120_000, 0, &mut |x| {
        assert!(x.timestamp_ms > 0, "{}", x.name)
    });
    assert_eq!(everything_ahead.newest, None);
}

#[test]
fn newest_time_spans_every_section() {
    let doc = r#"{"node":{"cpu":{"time":"2020-01-01T00:00:00Z"}},
            "pods":[{"podRef":{"name":"p"},"volume":[{"time":"2021-01-01T00:00:00Z","name":"v"}]}]}"#;
    let s = parse(doc.as_bytes()).unwrap();
    assert_eq!(newest_time(&s), Some(1_609_459_200_000));
}
