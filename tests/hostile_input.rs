//! End to end: hostile jobs on a real apalis worker
//! (in-memory backend) with `MonitorLayer` recording every job's arguments,
//! exported over OTLP/gRPC to the in-process receiver. The jobs carry
//! megabyte strings, 100 000 levels of nested JSON, bytes that are not
//! UTF-8, secrets under masked keys, megabyte ids and metadata, crafted
//! `traceparent` / `tracestate` / `baggage`; they fail with megabyte
//! messages and with errors whose `Display` and `Debug` panic, and panic
//! with payloads that are not strings.
//!
//! What is asserted, from what crossed the wire: no panic escaped, every
//! job's own result reached the worker unchanged, every span attribute,
//! event attribute, status message and link within its documented bound,
//! the text of each span within the per-span total, the metric series few
//! and short, the bad contexts counted; and (second test) the process's
//! resident memory flat over rounds of hostile jobs.

use jobsight_testkit::jobs::flush;
use jobsight_testkit::jobs::{monitor_builder_of, telemetry_to};
use jobsight_testkit::otlp::{self, Receiver, StatusCode, brief};
use jobsight_testkit::{serial, unique};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::queue::Queue;
use apalis_core::error::AbortError;
use apalis_core::task::metadata::MetadataStore;
use jobsight_apalis::{JobPanicked, MonitorLayer};
use jobsight_core::args::{MAX_KEY_LEN, TOO_DEEP, TRUNCATED_MARKER, UNSERIALIZABLE};
use jobsight_core::error::{MAX_MESSAGE_LEN, MAX_STACKTRACE_LEN, MAX_TYPE_LEN};
use jobsight_core::job::MAX_ID_LEN;
use jobsight_core::propagation::MAX_TRACESTATE_LEN;
use jobsight_core::{ArgsPolicy, JobMonitor, MAX_NAME_LEN, semconv};
use jobsight_otel::Telemetry;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde::{Serialize, Serializer};

const WAIT: Duration = Duration::from_secs(30);
const MB: usize = 1 << 20;
/// The default `ArgsPolicy` size limit.
const MAX_ARGS_LEN: usize = jobsight_core::args::DEFAULT_MAX_LEN;
/// The most text one `process` span may carry (attribute keys and string
/// values, event names and attributes, status message, links' trace state):
/// the sum of the per-field bounds documented in the README ("A job's input
/// is hostile": 3 x 4 KiB of arguments, message and status, a 16 KiB stack
/// trace, 1 KiB of trace state, names, ids and types), plus fixed keys.
const MAX_SPAN_TEXT: usize = 40 * 1024;
const SECRET: &str = "hunter2-correct-horse-battery-staple";
const GOOD_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

// ------------------------------------------------------------------ jobs

/// Serialized with `serialize_bytes`, as `serde_bytes` does.
struct RawBytes(Vec<u8>);

impl Serialize for RawBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// A JSON value nested 100 000 levels deep, built in code (serde_json's
/// recursion limit guards parsing only). Dismantled iteratively on drop:
/// serde_json's own drop would recurse once per level.
struct Deep(Option<serde_json::Value>);

impl Deep {
    fn new(levels: usize) -> Self {
        let mut value = serde_json::json!({ "password": SECRET, "leaf": "bottom" });
        for i in 0..levels {
            value = if i % 2 == 0 {
                serde_json::Value::Array(vec![value])
            } else {
                // Not `json!`: it would serialize `value` again, recursively.
                let mut map = serde_json::Map::new();
                map.insert("next".to_owned(), value);
                serde_json::Value::Object(map)
            };
        }
        Deep(Some(value))
    }
}

impl Drop for Deep {
    fn drop(&mut self) {
        let mut stack: Vec<serde_json::Value> = self.0.take().into_iter().collect();
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::Array(items) => stack.extend(items),
                serde_json::Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
                _ => {}
            }
        }
    }
}

impl Serialize for Deep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Every kind of hostile job. Arguments are recorded for all of them.
#[derive(Serialize)]
enum Hostile {
    /// A megabytes-long string beside a secret.
    Huge { blob: String, password: String },
    /// Bytes that are not UTF-8, as a byte string, a `Vec<u8>` and a path.
    Bytes {
        raw: RawBytes,
        list: Vec<u8>,
        path: std::path::PathBuf,
    },
    /// 100 000 levels of JSON.
    Deep(Deep),
    /// Fails with a message of this many bytes.
    HugeError(usize),
    /// Fails with an error whose `Display` and `Debug` panic.
    PanickyError,
    /// Panics with a `u64` payload.
    PanicWithNumber,
    /// Panics with a struct payload.
    PanicWithStruct,
    /// Panics with a message of this many bytes.
    HugePanic(usize),
    /// Succeeds; its metadata or id is the hostile part.
    Plain(u64),
}

impl fmt::Debug for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hostile(..)")
    }
}

#[derive(Debug)]
struct HugeError(String);

impl fmt::Display for HugeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HugeError {}

/// An error whose `Display` and `Debug` both panic.
struct PanickyError;

impl fmt::Display for PanickyError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("hostile-test: Display panics")
    }
}

impl fmt::Debug for PanickyError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("hostile-test: Debug panics")
    }
}

impl std::error::Error for PanickyError {}

struct PanicPayload {
    _code: u32,
}

/// The job's own result: a function of its arguments, so that the worker
/// can check it received exactly what the job returned.
fn checksum(job: &Hostile) -> u64 {
    match job {
        Hostile::Huge { blob, .. } => blob.len() as u64,
        Hostile::Bytes { raw, list, .. } => (raw.0.len() + list.len()) as u64,
        Hostile::Deep(_) => 100_000,
        Hostile::Plain(n) => *n,
        _ => 0,
    }
}

async fn run(job: Hostile) -> Result<u64, BoxDynError> {
    match job {
        Hostile::HugeError(len) => Err(HugeError("e".repeat(len)).into()),
        Hostile::PanickyError => Err(PanickyError.into()),
        Hostile::PanicWithNumber => std::panic::panic_any(0xdead_u64),
        Hostile::PanicWithStruct => std::panic::panic_any(PanicPayload { _code: 7 }),
        Hostile::HugePanic(len) => panic!("hostile-test: {}", "p".repeat(len)),
        other => Ok(checksum(&other)),
    }
}

/// Keeps the deliberate panics of this file (and the formatting panics
/// they cause) out of the test output; any other panic is reported.
fn quiet_deliberate_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let deliberate = payload.is::<u64>()
                || payload.is::<PanicPayload>()
                || payload
                    .downcast_ref::<String>()
                    .is_some_and(|s| s.starts_with("hostile-test"))
                || payload
                    .downcast_ref::<&str>()
                    .is_some_and(|s| s.starts_with("hostile-test"));
            if !deliberate {
                default(info);
            }
        }));
    });
}

// ----------------------------------------------------------- the batch

/// One job and what the worker must get back from it.
struct Case {
    label: &'static str,
    task: Task<Hostile>,
    expect: Expect,
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Ok(u64),
    /// A `HugeError` with a message of this many bytes.
    HugeError(usize),
    PanickyError,
    /// A caught panic (`JobPanicked` inside apalis's `AbortError`).
    Panicked,
}

fn task(job: Hostile, queue: &str, id: String, metadata: MetadataStore) -> Task<Hostile> {
    TaskBuilder::new(job)
        .queue(Queue::from(queue))
        .task_id(TaskId::from_string(id))
        .with_metadata(metadata)
        .build()
}

fn metadata(pairs: &[(&str, String)]) -> MetadataStore {
    let mut md = MetadataStore::new();
    for (k, v) in pairs {
        md.insert(*k, v.clone()).expect("metadata");
    }
    md
}

/// The hostile jobs, each with a label in its id. `scale` divides the
/// sizes (the memory test repeats the batch many times).
fn batch(queue: &str, round: usize, scale: usize) -> Vec<Case> {
    let id = |label: &str| format!("{label}-{round}");
    let mut invalid_utf8 = vec![0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0x00];
    invalid_utf8.extend(std::iter::repeat_n(0x80, 64 * 1024 / scale));
    #[cfg(unix)]
    let path = {
        use std::os::unix::ffi::OsStrExt;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&invalid_utf8[..8]))
    };
    #[cfg(not(unix))]
    let path = std::path::PathBuf::from("not-unix");
    let blob = "b\"\\\n\u{0}é".repeat(8 * MB / scale / 7);
    let blob_len = blob.len() as u64;
    let none = MetadataStore::new;
    let mut cases = vec![
        Case {
            label: "huge-args",
            task: task(
                Hostile::Huge {
                    blob,
                    password: SECRET.into(),
                },
                queue,
                id("huge-args"),
                none(),
            ),
            expect: Expect::Ok(blob_len),
        },
        Case {
            label: "not-utf8",
            task: task(
                Hostile::Bytes {
                    raw: RawBytes(invalid_utf8.clone()),
                    list: invalid_utf8.clone(),
                    path,
                },
                queue,
                id("not-utf8"),
                none(),
            ),
            expect: Expect::Ok(2 * invalid_utf8.len() as u64),
        },
        Case {
            label: "deep",
            task: task(
                Hostile::Deep(Deep::new(100_000 / scale)),
                queue,
                id("deep"),
                none(),
            ),
            expect: Expect::Ok(100_000),
        },
        Case {
            label: "huge-error",
            task: task(
                Hostile::HugeError(4 * MB / scale),
                queue,
                id("huge-error"),
                none(),
            ),
            expect: Expect::HugeError(4 * MB / scale),
        },
        Case {
            label: "panicky-error",
            task: task(Hostile::PanickyError, queue, id("panicky-error"), none()),
            expect: Expect::PanickyError,
        },
        Case {
            label: "panic-number",
            task: task(Hostile::PanicWithNumber, queue, id("panic-number"), none()),
            expect: Expect::Panicked,
        },
        Case {
            label: "panic-struct",
            task: task(Hostile::PanicWithStruct, queue, id("panic-struct"), none()),
            expect: Expect::Panicked,
        },
        Case {
            label: "huge-panic",
            task: task(
                Hostile::HugePanic(2 * MB / scale),
                queue,
                id("huge-panic"),
                none(),
            ),
            expect: Expect::Panicked,
        },
    ];
    // Hostile metadata and ids on jobs that succeed.
    let big = "m".repeat(MB / scale);
    let metadata_cases: Vec<(&'static str, MetadataStore)> = vec![
        (
            "traceparent-huge",
            metadata(&[("traceparent", format!("{GOOD_TRACEPARENT}-{big}"))]),
        ),
        (
            "traceparent-short-span-id",
            metadata(&[(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01".into(),
            )]),
        ),
        (
            "traceparent-upper-case",
            metadata(&[(
                "traceparent",
                "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01".into(),
            )]),
        ),
        (
            "traceparent-zero-ids",
            metadata(&[(
                "traceparent",
                "00-00000000000000000000000000000000-0000000000000000-01".into(),
            )]),
        ),
        (
            "traceparent-control-chars",
            metadata(&[(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\u{0}".into(),
            )]),
        ),
        (
            "tracestate-huge",
            metadata(&[
                ("traceparent", GOOD_TRACEPARENT.into()),
                ("tracestate", format!("vendor={big}")),
            ]),
        ),
        (
            "tracestate-many-members",
            metadata(&[
                ("traceparent", GOOD_TRACEPARENT.into()),
                (
                    "tracestate",
                    (0..100)
                        .map(|i| format!("k{i}=v"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            ]),
        ),
        ("baggage-huge", metadata(&[("baggage", format!("k={big}"))])),
        (
            "baggage-many-entries",
            metadata(&[(
                "baggage",
                (0..1000)
                    .map(|i| format!("k{i}=v"))
                    .collect::<Vec<_>>()
                    .join(","),
            )]),
        ),
        (
            "metadata-huge",
            metadata(&[
                (&big[..MAX_KEY_LEN * 4], big.clone()),
                ("api_key", SECRET.into()),
            ]),
        ),
        (
            "good-context",
            metadata(&[("traceparent", GOOD_TRACEPARENT.into())]),
        ),
    ];
    for (i, (label, md)) in metadata_cases.into_iter().enumerate() {
        cases.push(Case {
            label,
            task: task(Hostile::Plain(1000 + i as u64), queue, id(label), md),
            expect: Expect::Ok(1000 + i as u64),
        });
    }
    cases.push(Case {
        label: "id-huge",
        task: task(
            Hostile::Plain(7),
            queue,
            format!("id-huge-{round}-{big}"),
            none(),
        ),
        expect: Expect::Ok(7),
    });
    cases
}

/// What the worker saw, in the order jobs finished.
#[derive(Default)]
struct Seen {
    results: Vec<Expect>,
    surprises: Vec<String>,
}

fn classify(event: &Event) -> Option<Result<Expect, String>> {
    match event {
        Event::Success(value) => Some(match (**value).downcast_ref::<u64>() {
            Some(n) => Ok(Expect::Ok(*n)),
            None => Err(format!(
                "success of an unexpected type: {:?}",
                (**value).type_id()
            )),
        }),
        Event::Error(error) => {
            let error: &(dyn std::error::Error + 'static) = &***error;
            Some(if let Some(huge) = error.downcast_ref::<HugeError>() {
                Ok(Expect::HugeError(huge.0.len()))
            } else if error.is::<PanickyError>() {
                Ok(Expect::PanickyError)
            } else if let Some(abort) = error.downcast_ref::<AbortError>() {
                match std::error::Error::source(abort).map(|s| s.is::<JobPanicked>()) {
                    Some(true) => Ok(Expect::Panicked),
                    _ => Err("an AbortError that is not a caught panic".to_owned()),
                }
            } else {
                Err("an error of an unexpected type".to_owned())
            })
        }
        _ => None,
    }
}

/// Runs `cases` on one worker recording every job's arguments; returns what
/// the worker saw. Panics (failing the test) if the worker does not finish.
async fn run_batch(monitor: &JobMonitor, cases: Vec<Case>, worker_name: String) -> Seen {
    let n = cases.len();
    let mut storage = MemoryStorage::new();
    for case in cases {
        storage.push_task(case.task).await.expect("push");
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let finished = Arc::new(AtomicUsize::new(0));
    let handler = {
        let seen = Arc::clone(&seen);
        move |worker: &WorkerContext, event: &Event| {
            if let Some(result) = classify(event) {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(r) => seen.results.push(r),
                    Err(s) => seen.surprises.push(s),
                }
                if finished.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    let _ = worker.stop();
                }
            }
        }
    };
    let worker = WorkerBuilder::new(worker_name)
        .backend(storage)
        .layer(
            MonitorLayer::builder()
                .monitor(monitor.clone())
                .record_args(ArgsPolicy::new().all_jobs())
                .build()
                .unwrap(),
        )
        .on_event(handler)
        .build(run);
    tokio::time::timeout(Duration::from_secs(120), worker.run())
        .await
        .expect("the worker ran every hostile job within 120 s")
        .expect("worker");
    Arc::try_unwrap(seen)
        .ok()
        .expect("handler dropped")
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
}

/// The largest metadata key, metadata value and captured arguments an
/// observer was given, and whether a secret reached it.
#[derive(Default, Debug)]
struct Observed {
    events: usize,
    key: usize,
    value: usize,
    args: usize,
    secret: bool,
}

async fn install(rx: &Receiver) -> (Telemetry, JobMonitor) {
    install_observed(rx, Arc::default()).await
}

async fn install_observed(
    rx: &Receiver,
    observed: Arc<Mutex<Observed>>,
) -> (Telemetry, JobMonitor) {
    let telemetry = telemetry_to(rx, &unique("hostile"));
    let monitor = monitor_builder_of(&telemetry)
        .observer(move |event: &jobsight_core::JobEvent| {
            let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
            o.events += 1;
            for (k, v) in event.job.metadata() {
                o.key = o.key.max(k.len());
                o.value = o.value.max(v.len());
                o.secret |= v.contains(SECRET);
            }
            if let Some(args) = event.job.args() {
                o.args = o.args.max(args.as_str().len());
                o.secret |= args.as_str().contains(SECRET);
            }
        })
        .build();
    (telemetry, monitor)
}

async fn shutdown(telemetry: Telemetry) {
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("shutdown thread")
        .expect("shutdown");
}

// ----------------------------------------------------- wire assertions

fn text_len(value: &Option<AnyValue>) -> usize {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.len(),
        Some(any_value::Value::BytesValue(b)) => b.len(),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.iter().map(|v| text_len(&Some(v.clone()))).sum()
        }
        _ => 8,
    }
}

/// The bound of one attribute, by key.
fn bound(key: &str) -> usize {
    match key {
        semconv::JOB_ARGS => MAX_ARGS_LEN,
        "exception.message" => MAX_MESSAGE_LEN,
        "exception.stacktrace" => MAX_STACKTRACE_LEN,
        semconv::ERROR_TYPE | "exception.type" => MAX_TYPE_LEN,
        semconv::MESSAGING_MESSAGE_ID => MAX_ID_LEN,
        _ => MAX_NAME_LEN,
    }
}

fn attributes_text(attributes: &[KeyValue], owner: &str) -> usize {
    attributes
        .iter()
        .map(|kv| {
            let len = text_len(&kv.value);
            assert!(
                len <= bound(&kv.key),
                "{owner}: attribute {} has {len} bytes, over its bound {}",
                kv.key,
                bound(&kv.key)
            );
            kv.key.len() + len
        })
        .sum()
}

/// Checks every process span's fields against their bounds; returns the
/// largest total text of one span.
fn assert_spans_bounded(rx: &Receiver, queue: &str) -> usize {
    let mut largest = 0;
    for request in rx.raw_traces() {
        for rs in &request.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    if span.name != format!("process {queue}") {
                        continue;
                    }
                    let owner = format!("span {}", span.name);
                    let mut total = span.name.len() + attributes_text(&span.attributes, &owner);
                    for event in &span.events {
                        total += event.name.len() + attributes_text(&event.attributes, &owner);
                    }
                    for link in &span.links {
                        assert!(link.trace_state.len() <= MAX_TRACESTATE_LEN);
                        total += link.trace_state.len() + attributes_text(&link.attributes, &owner);
                    }
                    if let Some(status) = &span.status {
                        assert!(status.message.len() <= MAX_MESSAGE_LEN, "{owner}: status");
                        total += status.message.len();
                    }
                    assert!(total <= MAX_SPAN_TEXT, "{owner}: {total} bytes of text");
                    largest = largest.max(total);
                }
            }
        }
    }
    largest
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

// ----------------------------------------------------------------- tests

#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_jobs_keep_their_results_and_telemetry_stays_bounded() {
    let _serial = serial();
    quiet_deliberate_panics();
    let rx = Receiver::grpc().await;
    let observed = Arc::new(Mutex::new(Observed::default()));
    let (telemetry, monitor) = install_observed(&rx, Arc::clone(&observed)).await;
    let queue = unique("hostile");

    let cases = batch(&queue, 0, 1);
    let labels: Vec<&str> = cases.iter().map(|c| c.label).collect();
    let mut expected: Vec<Expect> = cases.iter().map(|c| c.expect.clone()).collect();
    let seen = run_batch(&monitor, cases, unique("hostile-worker")).await;
    assert!(seen.surprises.is_empty(), "{:?}", seen.surprises);
    let mut results = seen.results;
    let key = |e: &Expect| format!("{e:?}");
    results.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(
        results, expected,
        "each job's own result, as the worker saw it"
    );

    let telemetry = flush(telemetry).await;
    let spans = rx
        .wait_for_spans(
            |s: &[otlp::Span]| {
                s.iter()
                    .filter(|s| s.name == format!("process {queue}"))
                    .count()
                    >= labels.len()
            },
            WAIT,
        )
        .await;
    let spans: Vec<_> = spans
        .into_iter()
        .filter(|s| s.name == format!("process {queue}"))
        .collect();
    assert_eq!(
        spans.len(),
        labels.len(),
        "one process span a job: {}",
        brief(&spans)
    );
    let largest = assert_spans_bounded(&rx, &queue);
    eprintln!("largest process span: {largest} bytes of text (bound {MAX_SPAN_TEXT})");

    let by_label: BTreeMap<&str, &otlp::Span> = labels
        .iter()
        .map(|label| {
            let span = spans
                .iter()
                .find(|s| {
                    s.attr_str(semconv::MESSAGING_MESSAGE_ID)
                        .is_some_and(|id| id.starts_with(&format!("{label}-0")))
                })
                .unwrap_or_else(|| panic!("no span for {label}: {}", brief(&spans)));
            (*label, span)
        })
        .collect();
    let args = |label: &str| {
        by_label[label]
            .attr_str(semconv::JOB_ARGS)
            .unwrap_or_default()
            .to_owned()
    };

    // Arguments: cut, masked, bounded in depth, bytes as numbers.
    let huge = args("huge-args");
    assert!(
        huge.ends_with(TRUNCATED_MARKER) && huge.len() <= MAX_ARGS_LEN,
        "{huge:.200}"
    );
    let deep = args("deep");
    assert!(
        deep.contains(TOO_DEEP) && !deep.contains(SECRET),
        "{deep:.300}"
    );
    let bytes = args("not-utf8");
    assert!(
        bytes.starts_with(r#"{"Bytes":{"raw":[255,254,195,40"#),
        "{bytes:.200}"
    );
    assert!(bytes.len() <= MAX_ARGS_LEN);
    for span in &spans {
        let all = brief(std::slice::from_ref(span));
        assert!(
            !all.contains(SECRET),
            "a secret crossed the wire: {all:.400}"
        );
        assert_eq!(span.attr_str(semconv::JOB_NAME), Some("Hostile"));
    }
    // A path that is not UTF-8 cannot be serialized: the rest is kept.
    let path_case = Hostile::Bytes {
        raw: RawBytes(vec![]),
        list: vec![],
        path: by_path_of_invalid_utf8(),
    };
    let captured = ArgsPolicy::new().all_jobs().capture_always(&path_case);
    assert!(captured.as_str().contains(UNSERIALIZABLE), "{captured}");

    // Errors and panics: recorded, bounded, the worker unharmed.
    let huge_error = by_label["huge-error"];
    assert_eq!(huge_error.status_code, StatusCode::Error);
    assert_eq!(huge_error.status_message.len(), MAX_MESSAGE_LEN);
    assert_eq!(huge_error.attr_str(semconv::ERROR_TYPE), Some("HugeError"));
    let event = huge_error.event("exception").expect("exception event");
    let message = event
        .attributes
        .get("exception.message")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert_eq!(message.len(), MAX_MESSAGE_LEN);

    let panicky = by_label["panicky-error"];
    assert_eq!(panicky.status_code, StatusCode::Error);
    assert_eq!(
        panicky.attr_str(semconv::ERROR_TYPE),
        Some(semconv::ERROR_TYPE_OTHER)
    );
    assert!(
        panicky.status_message.contains("formatting panicked"),
        "{}",
        panicky.status_message
    );

    for label in ["panic-number", "panic-struct", "huge-panic"] {
        let span = by_label[label];
        assert_eq!(
            span.attr_str(semconv::JOB_OUTCOME),
            Some("panicked"),
            "{label}"
        );
        assert!(span.status_message.len() <= MAX_MESSAGE_LEN, "{label}");
    }
    assert!(
        by_label["panic-number"]
            .status_message
            .contains("non-string panic payload")
    );

    // Ids and contexts.
    let id = by_label["id-huge"]
        .attr_str(semconv::MESSAGING_MESSAGE_ID)
        .unwrap_or_default();
    assert_eq!(id.len(), MAX_ID_LEN);
    let good = by_label["good-context"];
    assert_eq!(good.links.len(), 1);
    assert_eq!(good.links[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
    for label in ["tracestate-huge", "tracestate-many-members"] {
        assert_eq!(
            by_label[label].links.len(),
            1,
            "{label}: the valid traceparent is kept"
        );
    }
    for label in [
        "traceparent-huge",
        "traceparent-short-span-id",
        "traceparent-upper-case",
        "traceparent-zero-ids",
        "traceparent-control-chars",
    ] {
        assert!(
            by_label[label].links.is_empty(),
            "{label}: {:?}",
            by_label[label].links
        );
        assert!(by_label[label].is_root(), "{label}");
    }

    // Metrics: the bad contexts counted by kind; every series short and few.
    let invalid = rx
        .wait_for_metric(semconv::METRIC_PROPAGATION_INVALID, WAIT)
        .await;
    let mut counted: BTreeMap<String, f64> = BTreeMap::new();
    for point in &invalid {
        let kind = point
            .attr(semconv::ERROR_TYPE)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
        *counted.entry(kind).or_default() += point.value.unwrap_or_default();
    }
    // too_long: traceparent-huge, tracestate-huge, baggage-huge; invalid:
    // short span id, upper case, zero ids, control characters.
    assert_eq!(
        counted,
        BTreeMap::from([("invalid".to_owned(), 4.0), ("too_long".to_owned(), 3.0)]),
        "{invalid:?}"
    );
    let points = rx.metrics();
    let mut series: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for point in &points {
        if point
            .attr(semconv::MESSAGING_DESTINATION_NAME)
            .and_then(|v| v.as_str())
            != Some(queue.as_str())
        {
            continue;
        }
        for (key, value) in &point.attributes {
            let len = value.as_str().map_or(0, str::len);
            assert!(len <= MAX_NAME_LEN, "{}: {key} has {len} bytes", point.name);
        }
        series
            .entry(&point.name)
            .or_default()
            .insert(format!("{:?}", point.attributes));
    }
    assert!(!series.is_empty());
    for (name, sets) in &series {
        // One kind; outcomes x error types of this batch at most.
        assert!(sets.len() <= 8, "{name}: {} series: {sets:#?}", sets.len());
    }

    // Observers get the metadata and arguments masked and bounded too.
    assert!(monitor.observers().flush(WAIT), "observers kept up");
    let o = observed.lock().unwrap_or_else(|e| e.into_inner());
    assert!(o.events >= 2 * labels.len(), "{o:?}");
    assert_eq!(
        o.key, MAX_KEY_LEN,
        "the megabyte metadata key is cut: {o:?}"
    );
    assert_eq!(
        o.value, MAX_ARGS_LEN,
        "the megabyte metadata value is cut: {o:?}"
    );
    assert!(o.args <= MAX_ARGS_LEN && !o.secret, "{o:?}");
    drop(o);

    drop(monitor);
    shutdown(telemetry).await;
}

fn by_path_of_invalid_utf8() -> std::path::PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&[0x66, 0xff, 0x6f]))
    }
    #[cfg(not(unix))]
    {
        std::path::PathBuf::from("not-unix")
    }
}

/// Rounds of hostile jobs (each round about 40 MB of hostile input): the
/// resident memory after the last round stays within `TOLERANCE` of what it
/// was after the first (which warms up allocator arenas, the exporter's
/// buffers and the receiver).
#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_over_rounds_of_hostile_jobs() {
    const ROUNDS: usize = 12;
    const TOLERANCE: usize = 32 * MB;
    let _serial = serial();
    quiet_deliberate_panics();
    let rx = Receiver::grpc().await;
    let (mut telemetry, monitor) = install(&rx).await;
    let queue = unique("hostile-memory");
    let mut after_first = 0;
    let mut per_round = Vec::new();
    for round in 0..ROUNDS {
        // Four copies of the batch at a quarter of the sizes.
        let mut cases = Vec::new();
        for copy in 0..4 {
            cases.extend(batch(&queue, round * 4 + copy, 4));
        }
        let n = cases.len();
        let seen = run_batch(&monitor, cases, unique("hostile-memory-worker")).await;
        assert_eq!(seen.results.len(), n, "{:?}", seen.surprises);
        telemetry = flush(telemetry).await;
        rx.clear();
        let rss = resident_bytes();
        per_round.push(rss / MB);
        if round == 0 {
            after_first = rss;
        }
    }
    let last = resident_bytes();
    eprintln!("resident MiB after each round: {per_round:?}");
    assert!(
        last <= after_first + TOLERANCE,
        "resident memory grew from {} MiB to {} MiB over {ROUNDS} rounds: {per_round:?}",
        after_first / MB,
        last / MB
    );
    drop(monitor);
    shutdown(telemetry).await;
}

/// An error whose `Debug` starts with an identifier taken from input (as
/// `anyhow!(input)` gives): each becomes its own `error.type`.
struct InputNamedError(String);

impl fmt::Debug for InputNamedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InputNamedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputNamedError {}

/// 5 000 failures of one job kind, each with a different `error.type` made
/// from input: each metric stays within the SDK's cardinality limit (2 000
/// series, then one `otel.metric.overflow` series), every job is counted,
/// and the export still fits one OTLP/gRPC request.
#[allow(clippy::await_holding_lock)] // serializes the tests that install global telemetry
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_types_made_from_input_stay_within_the_series_limit() {
    const JOBS: usize = 5_000;
    const SDK_LIMIT: usize = 2_000;
    let _serial = serial();
    let rx = Receiver::grpc().await;
    let (telemetry, monitor) = install(&rx).await;
    let queue = unique("hostile-error-types");
    let jobs_queue = queue.clone();
    let monitor = tokio::task::spawn_blocking(move || {
        for i in 0..JOBS {
            let meta = jobsight_core::JobMeta::builder("test", jobs_queue.as_str())
                .name("import")
                .attempt(1)
                .max_attempts(1)
                .build();
            let _ = monitor
                .start(meta)
                .fail(&InputNamedError(format!("Customer{i}")));
        }
        monitor
    })
    .await
    .expect("jobs ran");
    let telemetry = flush(telemetry).await;
    let points = rx
        .wait_for_metric(semconv::METRIC_CONSUMED_MESSAGES, WAIT)
        .await;
    let ours: Vec<_> = points
        .iter()
        .filter(|p| {
            p.attr(semconv::MESSAGING_DESTINATION_NAME)
                .and_then(|v| v.as_str())
                == Some(queue.as_str())
        })
        .collect();
    let overflow = points
        .iter()
        .filter(|p| p.attr("otel.metric.overflow").is_some())
        .count();
    let counted: f64 = points.iter().filter_map(|p| p.value).sum();
    eprintln!(
        "{} points, {} of this queue, {overflow} overflow, counted {counted}; types: {:?}",
        points.len(),
        ours.len(),
        ours.iter()
            .take(3)
            .map(|p| p.attr(semconv::ERROR_TYPE).cloned())
            .collect::<Vec<_>>()
    );
    assert!(ours.len() <= SDK_LIMIT, "{} series", ours.len());
    assert_eq!(overflow, 1, "one overflow series");
    assert_eq!(
        counted as usize, JOBS,
        "every job counted, in a series of its own or in the overflow"
    );
    for p in &ours {
        let error_type = p
            .attr(semconv::ERROR_TYPE)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        assert!(error_type.len() <= MAX_TYPE_LEN);
    }
    drop(monitor);
    shutdown(telemetry).await;
}
