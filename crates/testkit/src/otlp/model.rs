//! A flattened, assertion-friendly view of the OTLP requests the receiver keeps.
//!
//! Every span and every metric data point is copied out of its
//! resource/scope envelope together with the resource attributes and the
//! scope name, so a test can filter a flat `Vec` instead of walking the
//! protobuf tree.

use std::collections::BTreeMap;
use std::fmt;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
pub use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// An attribute value. Arrays, maps and bytes are kept as the raw proto value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Array, key-value list, bytes, or an empty `AnyValue`.
    Other(AnyValue),
}

impl Value {
    /// The string, `None` for other types.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, `None` for other types.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A double, or an int widened to `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, `None` for other types.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn from_any(v: Option<&AnyValue>) -> Value {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
            Some(any_value::Value::IntValue(i)) => Value::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
            Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
            _ => Value::Other(v.cloned().unwrap_or_default()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Other(v) => write!(f, "{v:?}"),
        }
    }
}

/// Attributes by key.
pub type Attributes = BTreeMap<String, Value>;

/// Flattens OTLP key-values into a map (a repeated key keeps the last value).
pub fn attributes(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .map(|kv| (kv.key.clone(), Value::from_any(kv.value.as_ref())))
        .collect()
}

fn resource_attributes(r: Option<&Resource>) -> Attributes {
    r.map(|r| attributes(&r.attributes)).unwrap_or_default()
}

/// Lowercase hex of an id (empty for an empty id).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event's name.
    pub name: String,
    /// When it happened.
    pub time_unix_nano: u64,
    /// Its attributes.
    pub attributes: Attributes,
}

/// A span link.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// Lowercase hex, 32 chars.
    pub trace_id: String,
    /// Lowercase hex, 16 chars.
    pub span_id: String,
    /// The link's attributes.
    pub attributes: Attributes,
}

/// One span, with its resource and scope copied in.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// The span's name.
    pub name: String,
    /// Its kind.
    pub kind: SpanKind,
    /// Lowercase hex, 32 chars.
    pub trace_id: String,
    /// Lowercase hex, 16 chars.
    pub span_id: String,
    /// Lowercase hex; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Start time.
    pub start_time_unix_nano: u64,
    /// End time.
    pub end_time_unix_nano: u64,
    /// The span's attributes.
    pub attributes: Attributes,
    /// Status code.
    pub status_code: StatusCode,
    /// Status description.
    pub status_message: String,
    /// Events, in order.
    pub events: Vec<Event>,
    /// Links, in order.
    pub links: Vec<Link>,
    /// The resource's attributes.
    pub resource: Attributes,
    /// The instrumentation scope's name.
    pub scope_name: String,
    /// The instrumentation scope's version (empty when unset).
    pub scope_version: String,
    /// The schema URL of the scope (empty when unset).
    pub scope_schema_url: String,
}

impl Span {
    /// The attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    /// The attribute as a string, `None` when absent or not a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.name == name)
    }

    /// True without a parent span.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// End minus start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_time_unix_nano
            .saturating_sub(self.start_time_unix_nano)
    }
}

/// One log record with its resource and scope (a record's `target` is
/// exported as its scope's name).
#[derive(Clone, Debug)]
pub struct LogRecord {
    /// The body when it is text (other bodies: `None`).
    pub body: Option<String>,
    /// OTLP severity number (9 = INFO, 13 = WARN, 17 = ERROR).
    pub severity_number: i32,
    /// `INFO`, `WARN`, ….
    pub severity_text: String,
    /// The event name (`exception` for jobsight's exception records).
    pub event_name: String,
    /// Lowercase hex; all zeros or empty when the record has no trace context.
    pub trace_id: String,
    /// Lowercase hex; empty when the record has no trace context.
    pub span_id: String,
    /// W3C trace flags (bit 0: sampled).
    pub flags: u32,
    /// The record's attributes.
    pub attributes: Attributes,
    /// The scope's name: the record's target when it has one.
    pub scope_name: String,
    /// The resource's attributes.
    pub resource: Attributes,
}

impl LogRecord {
    /// One attribute.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    /// One text attribute.
    pub fn str_attr(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(Value::as_str)
    }
}

/// Every log record of the requests, in arrival order.
pub fn flatten_logs(requests: &[ExportLogsServiceRequest]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for req in requests {
        for rl in &req.resource_logs {
            let resource = resource_attributes(rl.resource.as_ref());
            for sl in &rl.scope_logs {
                let scope_name = sl
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                for r in &sl.log_records {
                    let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    };
                    out.push(LogRecord {
                        body,
                        severity_number: r.severity_number,
                        severity_text: r.severity_text.clone(),
                        event_name: r.event_name.clone(),
                        trace_id: hex(&r.trace_id),
                        span_id: hex(&r.span_id),
                        flags: r.flags,
                        attributes: attributes(&r.attributes),
                        scope_name: scope_name.clone(),
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Every span of the requests, in arrival order.
pub fn flatten_spans(requests: &[ExportTraceServiceRequest]) -> Vec<Span> {
    let mut out = Vec::new();
    for req in requests {
        for rs in &req.resource_spans {
            let resource = resource_attributes(rs.resource.as_ref());
            for ss in &rs.scope_spans {
                let scope_name = ss
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                let scope_version = ss
                    .scope
                    .as_ref()
                    .map(|s| s.version.clone())
                    .unwrap_or_default();
                let scope_schema_url = ss.schema_url.clone();
                for s in &ss.spans {
                    let status = s.status.clone().unwrap_or_default();
                    out.push(Span {
                        name: s.name.clone(),
                        kind: SpanKind::try_from(s.kind).unwrap_or(SpanKind::Unspecified),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: (!s.parent_span_id.is_empty())
                            .then(|| hex(&s.parent_span_id)),
                        start_time_unix_nano: s.start_time_unix_nano,
                        end_time_unix_nano: s.end_time_unix_nano,
                        attributes: attributes(&s.attributes),
                        status_code: StatusCode::try_from(status.code).unwrap_or(StatusCode::Unset),
                        status_message: status.message,
                        events: s
                            .events
                            .iter()
                            .map(|e| Event {
                                name: e.name.clone(),
                                time_unix_nano: e.time_unix_nano,
                                attributes: attributes(&e.attributes),
                            })
                            .collect(),
                        links: s
                            .links
                            .iter()
                            .map(|l| Link {
                                trace_id: hex(&l.trace_id),
                                span_id: hex(&l.span_id),
                                attributes: attributes(&l.attributes),
                            })
                            .collect(),
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        scope_version: scope_version.clone(),
                        scope_schema_url: scope_schema_url.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The kind of a metric's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Counter or up-down counter.
    Sum,
    /// Gauge.
    Gauge,
    /// Explicit-bucket histogram.
    Histogram,
    /// Exponential histogram.
    ExpHistogram,
    /// Summary.
    Summary,
}

/// Aggregation temporality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    /// Not set (gauges, summaries).
    Unspecified,
    /// Each point covers the time since the previous export.
    Delta,
    /// Each point covers the time since the start.
    Cumulative,
}

impl Temporality {
    fn from_i32(v: i32) -> Self {
        match AggregationTemporality::try_from(v) {
            Ok(AggregationTemporality::Delta) => Temporality::Delta,
            Ok(AggregationTemporality::Cumulative) => Temporality::Cumulative,
            _ => Temporality::Unspecified,
        }
    }
}

/// One data point of one metric, with its envelope copied in.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    /// The metric's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its unit.
    pub unit: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Sums and histograms; `Unspecified` for gauges and summaries.
    pub temporality: Temporality,
    /// Sums only.
    pub monotonic: Option<bool>,
    /// The point's attributes.
    pub attributes: Attributes,
    /// Sums and gauges (ints widened to `f64`).
    pub value: Option<f64>,
    /// Histograms, exponential histograms and summaries.
    pub count: Option<u64>,
    /// Histograms and summaries: the sum.
    pub sum: Option<f64>,
    /// Histograms: the minimum, when recorded.
    pub min: Option<f64>,
    /// Histograms: the maximum, when recorded.
    pub max: Option<f64>,
    /// Explicit-bucket histograms (`bucket_counts.len() == explicit_bounds.len() + 1`).
    pub bucket_counts: Vec<u64>,
    /// Explicit-bucket histograms: the bucket bounds.
    pub explicit_bounds: Vec<f64>,
    /// Start of the point's interval.
    pub start_time_unix_nano: u64,
    /// End of the point's interval.
    pub time_unix_nano: u64,
    /// The resource's attributes.
    pub resource: Attributes,
    /// The instrumentation scope's name.
    pub scope_name: String,
    /// The instrumentation scope's version (empty when unset).
    pub scope_version: String,
    /// The schema URL of the scope (empty when unset).
    pub scope_schema_url: String,
}

impl MetricPoint {
    /// The attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }
}

/// Every metric data point of the requests, in arrival order.
pub fn flatten_metrics(requests: &[ExportMetricsServiceRequest]) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for req in requests {
        for rm in &req.resource_metrics {
            let resource = resource_attributes(rm.resource.as_ref());
            for sm in &rm.scope_metrics {
                let scope_name = sm
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                let scope_version = sm
                    .scope
                    .as_ref()
                    .map(|s| s.version.clone())
                    .unwrap_or_default();
                let scope_schema_url = sm.schema_url.clone();
                for m in &sm.metrics {
                    let base = MetricPoint {
                        name: m.name.clone(),
                        description: m.description.clone(),
                        unit: m.unit.clone(),
                        kind: MetricKind::Gauge,
                        temporality: Temporality::Unspecified,
                        monotonic: None,
                        attributes: Attributes::new(),
                        value: None,
                        count: None,
                        sum: None,
                        min: None,
                        max: None,
                        bucket_counts: Vec::new(),
                        explicit_bounds: Vec::new(),
                        start_time_unix_nano: 0,
                        time_unix_nano: 0,
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        scope_version: scope_version.clone(),
                        scope_schema_url: scope_schema_url.clone(),
                    };
                    let number = |v: &Option<number_data_point::Value>| match v {
                        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
                        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
                        None => None,
                    };
                    match &m.data {
                        Some(Data::Sum(s)) => {
                            for p in &s.data_points {
                                out.push(MetricPoint {
                                    kind: MetricKind::Sum,
                                    temporality: Temporality::from_i32(s.aggregation_temporality),
                                    monotonic: Some(s.is_monotonic),
                                    attributes: attributes(&p.attributes),
                                    value: number(&p.value),
                                    start_time_unix_nano: p.start_time_unix_nano,
                                    time_unix_nano: p.time_unix_nano,
                                    ..base.clone()
                                });
                            }
                        }
                        Some(Data::Gauge(g)) => {
                            for p in &g.data_points {
                                out.push(MetricPoint {
                                    kind: MetricKind::Gauge,
                                    attributes: attributes(&p.attributes),
                                    value: number(&p.value),
                                    start_time_unix_nano: p.start_time_unix_nano,
                                    time_unix_nano: p.time_unix_nano,
                                    ..base.clone()
                                });
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            for p in &h.data_points {
                                out.push(MetricPoint {
                                    kind: MetricKind::Histogram,
                                    temporality: Temporality::from_i32(h.aggregation_temporality),
                                    attributes: attributes(&p.attributes),
                                    count: Some(p.count),
                                    sum: p.sum,
                                    min: p.min,
                                    max: p.max,
                                    bucket_counts: p.bucket_counts.clone(),
                                    explicit_bounds: p.explicit_bounds.clone(),
                                    start_time_unix_nano: p.start_time_unix_nano,
                                    time_unix_nano: p.time_unix_nano,
                                    ..base.clone()
                                });
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            for p in &h.data_points {
                                out.push(MetricPoint {
                                    kind: MetricKind::ExpHistogram,
                                    temporality: Temporality::from_i32(h.aggregation_temporality),
                                    attributes: attributes(&p.attributes),
                                    count: Some(p.count),
                                    sum: p.sum,
                                    min: p.min,
                                    max: p.max,
                                    start_time_unix_nano: p.start_time_unix_nano,
                                    time_unix_nano: p.time_unix_nano,
                                    ..base.clone()
                                });
                            }
                        }
                        Some(Data::Summary(s)) => {
                            for p in &s.data_points {
                                out.push(MetricPoint {
                                    kind: MetricKind::Summary,
                                    attributes: attributes(&p.attributes),
                                    count: Some(p.count),
                                    sum: Some(p.sum),
                                    start_time_unix_nano: p.start_time_unix_nano,
                                    time_unix_nano: p.time_unix_nano,
                                    ..base.clone()
                                });
                            }
                        }
                        None => {}
                    }
                }
            }
        }
    }
    out
}
