//! Every `OTEL_*` variable this crate reads, given a wrong value: the
//! install fails naming the variable and what it accepts. The table is
//! checked against the list of variables the crate reads, so a variable
//! added without a row here fails the test. Header values (credentials)
//! never appear in an error's `Display` or `Debug`, nor in the `Debug` of
//! the parsed configuration.

use std::collections::BTreeSet;

use crate::config::{
    BLRP_MAX_EXPORT_BATCH_SIZE_VAR, BLRP_MAX_QUEUE_SIZE_VAR, BLRP_SCHEDULE_DELAY_VAR,
    BSP_MAX_EXPORT_BATCH_SIZE_VAR, BSP_MAX_QUEUE_SIZE_VAR, BSP_SCHEDULE_DELAY_VAR, EnvConfig,
    LOG_ATTRIBUTE_COUNT_LIMIT_VAR, LOG_ATTRIBUTE_VALUE_LENGTH_LIMIT_VAR, LOG_FILTER_VAR,
    LOGS_EXPORTER_VAR, METRIC_EXPORT_INTERVAL_VAR, RESOURCE_ATTRIBUTES_VAR, SDK_DISABLED_VAR,
    SERVICE_NAME_VAR,
};
use crate::sampler::{SAMPLER_ARG_VAR, SAMPLER_VAR};
use crate::signal::{GENERIC_VARS, OtlpVars};
use crate::{Builder, Error, Signal};
use jobsight_testkit::serial;

const SECRET: &str = "s3cr3t-api-key-0123456789";

/// Variables that take any text (an empty value counts as unset).
const FREE_TEXT: &[&str] = &[SERVICE_NAME_VAR];

fn every_variable() -> BTreeSet<&'static str> {
    let signal = |v: OtlpVars| {
        [
            v.endpoint,
            v.protocol,
            v.headers,
            v.timeout,
            v.certificate,
            v.client_key,
            v.client_certificate,
        ]
    };
    let mut all: BTreeSet<&'static str> = [
        SDK_DISABLED_VAR,
        SERVICE_NAME_VAR,
        RESOURCE_ATTRIBUTES_VAR,
        METRIC_EXPORT_INTERVAL_VAR,
        BSP_MAX_QUEUE_SIZE_VAR,
        BSP_SCHEDULE_DELAY_VAR,
        BSP_MAX_EXPORT_BATCH_SIZE_VAR,
        SAMPLER_VAR,
        SAMPLER_ARG_VAR,
        LOGS_EXPORTER_VAR,
        BLRP_MAX_QUEUE_SIZE_VAR,
        BLRP_SCHEDULE_DELAY_VAR,
        BLRP_MAX_EXPORT_BATCH_SIZE_VAR,
        LOG_ATTRIBUTE_COUNT_LIMIT_VAR,
        LOG_ATTRIBUTE_VALUE_LENGTH_LIMIT_VAR,
        LOG_FILTER_VAR,
    ]
    .into_iter()
    .collect();
    all.extend(crate::sdk_env::variables());
    all.extend(signal(GENERIC_VARS));
    for s in Signal::ALL {
        all.extend(signal(s.vars()));
    }
    all
}

/// One wrong value: the variable, the value, other variables it needs to
/// be read, and the fragments the message must contain (what is accepted).
struct Row {
    variable: &'static str,
    value: String,
    with: Vec<(&'static str, String)>,
    accepted: &'static [&'static str],
}

fn row(variable: &'static str, value: &str, accepted: &'static [&'static str]) -> Row {
    Row {
        variable,
        value: value.to_owned(),
        with: Vec::new(),
        accepted,
    }
}

/// The certificate variables are read at install, for https endpoints.
fn file_row(variable: &'static str, signal_endpoint: &'static str) -> Row {
    let missing = std::env::temp_dir().join("jobsight-no-such-dir/ca.pem");
    Row {
        variable,
        value: missing.display().to_string(),
        with: vec![(signal_endpoint, "https://collector.invalid:4318".to_owned())],
        accepted: &["cannot read", "jobsight-no-such-dir/ca.pem"],
    }
}

fn rows() -> Vec<Row> {
    const MILLIS: &[&str] = &["whole number of milliseconds", "e.g. `5000`"];
    const COUNT: &[&str] = &["whole number greater than 0", "e.g."];
    const URL: &[&str] = &["`http://`", "e.g. `http://localhost:4318`"];
    const PROTOCOL: &[&str] = &["accepted values: `grpc`, `http/protobuf`"];
    const HEADERS: &[&str] = &["expected comma-separated `key=value` pairs"];
    let mut rows = vec![
        row(
            SDK_DISABLED_VAR,
            "yes",
            &["accepted values: `true`, `false`"],
        ),
        row(RESOURCE_ATTRIBUTES_VAR, "team", &["`key=value`"]),
        row(METRIC_EXPORT_INTERVAL_VAR, "10s", MILLIS),
        row(BSP_MAX_QUEUE_SIZE_VAR, "-5", COUNT),
        row(BSP_SCHEDULE_DELAY_VAR, "0", MILLIS),
        row(BSP_MAX_EXPORT_BATCH_SIZE_VAR, "lots", COUNT),
        row(
            SAMPLER_VAR,
            "sometimes",
            &["accepted values: `always_on`", "`parentbased_traceidratio`"],
        ),
        row(
            LOGS_EXPORTER_VAR,
            "console",
            &["accepted values: `otlp`, `none`"],
        ),
        row(BLRP_MAX_QUEUE_SIZE_VAR, "0", COUNT),
        row(BLRP_SCHEDULE_DELAY_VAR, "1s", MILLIS),
        row(BLRP_MAX_EXPORT_BATCH_SIZE_VAR, "half", COUNT),
        row(LOG_ATTRIBUTE_COUNT_LIMIT_VAR, "-1", COUNT),
        row(LOG_ATTRIBUTE_VALUE_LENGTH_LIMIT_VAR, "big", COUNT),
        row(LOG_FILTER_VAR, "app=loud", &["`target=level`", "`trace`"]),
        Row {
            variable: SAMPLER_ARG_VAR,
            value: "1.5".into(),
            with: vec![(SAMPLER_VAR, "traceidratio".to_owned())],
            accepted: &["expected a number from 0 to 1"],
        },
    ];
    // Read by the SDK and the OTLP exporter themselves; checked by us first.
    rows.extend([
        row(
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "gzip",
            &["accepted values: `none`"],
        ),
        row(
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "zip",
            &["accepted values: `none`"],
        ),
        row(
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "zstd",
            &["accepted values: `none`"],
        ),
        row("OTEL_EXPORTER_OTLP_INSECURE", "maybe", &["`true`, `false`"]),
        row(
            "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
            "1",
            &["`true`, `false`"],
        ),
        row(
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
            "yes",
            &["`true`, `false`"],
        ),
        row(
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
            "weekly",
            &["`cumulative`, `delta`, `lowmemory`"],
        ),
        row("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "many", COUNT),
        row("OTEL_SPAN_EVENT_COUNT_LIMIT", "-1", COUNT),
        row("OTEL_SPAN_LINK_COUNT_LIMIT", "5000000000", COUNT),
        row("OTEL_BSP_MAX_CONCURRENT_EXPORTS", "0", COUNT),
        row("OTEL_BSP_EXPORT_TIMEOUT", "30s", MILLIS),
        row("OTEL_METRIC_EXPORT_TIMEOUT", "x", MILLIS),
        row("OTEL_BLRP_EXPORT_TIMEOUT", "5s", MILLIS),
        row(
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
            "gzip",
            &["accepted values: `none`"],
        ),
        row(
            "OTEL_EXPORTER_OTLP_LOGS_INSECURE",
            "no",
            &["`true`, `false`"],
        ),
    ]);
    for vars in [
        GENERIC_VARS,
        Signal::Traces.vars(),
        Signal::Metrics.vars(),
        Signal::Logs.vars(),
    ] {
        rows.push(row(vars.endpoint, "localhost:4317", URL));
        rows.push(row(vars.protocol, "http/xml", PROTOCOL));
        rows.push(row(
            vars.headers,
            &format!("api-key={SECRET},{SECRET}"),
            HEADERS,
        ));
        rows.push(row(vars.timeout, "2.5", MILLIS));
        rows.push(file_row(vars.certificate, vars.endpoint));
        // Half an identity: the message names the missing half.
        for half in [vars.client_key, vars.client_certificate] {
            let mut r = row(half, "/etc/otel/half.pem", &["CLIENT_"]);
            r.with
                .push((vars.endpoint, "https://collector.invalid:4318".to_owned()));
            rows.push(r);
        }
    }
    rows
}

fn install_error(vars: &[(&str, String)]) -> Error {
    let _lock = serial();
    let map: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let env = match EnvConfig::from_lookup(|name| map.get(name).cloned()) {
        Ok(env) => env,
        Err(error) => return error,
    };
    match Builder::default().summary(false).install_with(&env) {
        Ok(_) => panic!("installed with {vars:?}"),
        Err(error) => error,
    }
}

#[test]
fn every_variable_with_a_wrong_value_fails_naming_it_and_what_it_accepts() {
    let rows = rows();
    let covered: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.variable)
        .chain(FREE_TEXT.iter().copied())
        .collect();
    assert_eq!(covered, every_variable(), "a variable without a row");
    for r in &rows {
        let mut vars = r.with.clone();
        vars.push((r.variable, r.value.clone()));
        let error = install_error(&vars);
        let Error::InvalidEnv { variable, .. } = &error else {
            panic!("{}: not InvalidEnv: {error}", r.variable);
        };
        assert_eq!(*variable, r.variable, "{error}");
        let message = error.to_string();
        assert!(message.starts_with(r.variable), "{message}");
        for part in r.accepted {
            assert!(
                message.contains(part),
                "{}: {part:?} not in {message:?}",
                r.variable
            );
        }
        let debug = format!("{error:?}");
        assert!(
            !message.contains(SECRET) && !debug.contains(SECRET),
            "{debug}"
        );
    }
}

#[test]
fn header_values_never_appear_in_errors_or_in_the_parsed_configuration() {
    let malformed = [
        format!("authorization=Bearer {SECRET},{SECRET}"),
        format!("api-key={SECRET}%ZZ"),
        format!("api key={SECRET}"),
        format!("x-api-key={SECRET}%0D%0Ainjected: 1"),
        SECRET.to_owned(),
        format!("=,{SECRET}="),
    ];
    for vars in [GENERIC_VARS, Signal::Traces.vars(), Signal::Metrics.vars()] {
        for value in &malformed {
            let error = install_error(&[(vars.headers, value.clone())]);
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(
                    shown.starts_with(vars.headers) || shown.contains(vars.headers),
                    "{shown}"
                );
                assert!(!shown.contains(SECRET), "{shown}");
            }
        }
        // Well-formed headers are parsed, and the parsed form hides them.
        let good = format!("authorization=Bearer%20{SECRET},x-team=jobs");
        let map = std::collections::HashMap::from([(vars.headers.to_owned(), good)]);
        let env = EnvConfig::from_lookup(|name| map.get(name).cloned()).expect("valid headers");
        let debug = format!("{env:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            debug.contains("authorization"),
            "the names are shown: {debug}"
        );
    }
}
