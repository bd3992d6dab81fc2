//! TLS end to end: spans exported over https to a receiver whose certificate
//! is issued by the test kit's CA (`jobsight_testkit::tls`), and the install-time
//! checks of the certificate variables.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::trace::Tracer as _;
use opentelemetry_http::{Bytes, HttpClient as _, Request};

use super::*;
use crate::export_runtime::ExportRuntime;
use crate::exporter_wrap::TransportError;
use crate::test_support::env;
use crate::{Builder, ExportFailures, Telemetry};
use jobsight_testkit::otlp::{Receiver, Transport as Front};
use jobsight_testkit::serial;
use jobsight_testkit::tls::cert_path as fixture;

const CA_VAR: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";

/// The environment for exporting traces only to the receiver, over
/// `https://{host}:{port}`, plus `extra`.
fn traces_env(
    receiver: &Receiver,
    host: &str,
    front: Front,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let base = format!("https://{host}:{}", receiver.addr().port());
    let (endpoint, protocol) = match front {
        Front::Grpc => (base, "grpc"),
        Front::Http => (format!("{base}/v1/traces"), "http/protobuf"),
    };
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_owned(), endpoint),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
            protocol.to_owned(),
        ),
        // A failing export gives up (after its retries) within 2 s.
        ("OTEL_EXPORTER_OTLP_TIMEOUT".to_owned(), "2000".to_owned()),
    ];
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    vars
}

fn install(vars: &[(String, String)]) -> Result<Telemetry, Error> {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Builder::default()
        .summary(false)
        .shutdown_timeout(Duration::from_secs(10))
        .install_with(&env(&vars))
}

/// Records one span named `name` and flushes; the failures counted by then.
fn export_one_span(telemetry: &Telemetry, name: &'static str) -> ExportFailures {
    global::tracer("tls-test").in_span(name, |_| {});
    let _ = telemetry.force_flush();
    telemetry.export_failures()
}

/// The test kit's OTLP receiver behind TLS (its server certificate is
/// issued by `ca.pem`), mutual when `mutual`.
fn tls_receiver(front: Front, mutual: bool) -> Receiver {
    Receiver::builder(front).tls(mutual).start()
}

fn path(name: &str) -> String {
    fixture(name).display().to_string()
}

/// Exports one span to a fresh receiver; the names it received, if any, and
/// the failures counted.
fn round_trip(
    front: Front,
    host: &str,
    mutual: bool,
    extra: &[(&str, String)],
) -> (Option<Vec<String>>, ExportFailures) {
    let _lock = serial();
    let receiver = tls_receiver(front, mutual);
    let telemetry = install(&traces_env(&receiver, host, front, extra)).unwrap();
    assert!(telemetry.has_export_runtime(), "{front:?} over https");
    let failures = export_one_span(&telemetry, "tls-span");
    let received: Vec<String> = receiver
        .wait_for_spans_blocking(1, Duration::from_millis(200))
        .into_iter()
        .map(|span| span.name)
        .collect();
    let received = (!received.is_empty()).then_some(received);
    drop(telemetry);
    (received, failures)
}

#[test]
fn grpc_export_arrives_when_the_ca_is_trusted() {
    let (received, failures) =
        round_trip(Front::Grpc, "localhost", false, &[(CA_VAR, path("ca.pem"))]);
    assert_eq!(received, Some(vec!["tls-span".to_owned()]));
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn http_export_arrives_when_the_ca_is_trusted() {
    // The per-signal variable, and an IP address SAN this time.
    let (received, failures) = round_trip(
        Front::Http,
        "127.0.0.1",
        false,
        &[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path("ca.pem"))],
    );
    assert_eq!(received, Some(vec!["tls-span".to_owned()]));
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn without_the_ca_exports_fail_and_are_counted() {
    for front in [Front::Grpc, Front::Http] {
        // Only the built-in roots: the test CA is not among them.
        let (received, failures) = round_trip(front, "localhost", false, &[]);
        assert_eq!(received, None, "{front:?}");
        assert_eq!(failures.failed_span_exports, 1, "{front:?}: {failures}");
        assert_eq!(failures.dropped_spans, 1, "{front:?}: {failures}");
    }
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    let client = [
        (CA_VAR, path("ca.pem")),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path("client.pem")),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path("client.key")),
    ];
    for front in [Front::Grpc, Front::Http] {
        let (received, failures) = round_trip(front, "localhost", true, &client);
        assert_eq!(received, Some(vec!["tls-span".to_owned()]), "{front:?}");
        assert!(failures.is_empty(), "{front:?}: {failures}");

        // The same server refuses a client without a certificate.
        let (received, failures) = round_trip(front, "localhost", true, &client[..1]);
        assert_eq!(received, None, "{front:?}");
        assert_eq!(failures.failed_span_exports, 1, "{front:?}: {failures}");
    }
}

/// The install error for `vars` on an https gRPC or HTTP endpoint.
fn install_error(vars: &[(&str, String)]) -> Error {
    let _lock = serial();
    let mut all = vec![(
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
        "https://collector.invalid:4318".to_owned(),
    )];
    all.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let http = install(&all).unwrap_err();
    all.push(("OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(), "grpc".to_owned()));
    let grpc = install(&all).unwrap_err();
    assert_eq!(http.to_string(), grpc.to_string());
    http
}

fn assert_invalid_env(error: &Error, expected_variable: &str, expected: &[&str]) {
    let Error::InvalidEnv { variable, .. } = error else {
        panic!("not InvalidEnv: {error}");
    };
    assert_eq!(*variable, expected_variable, "{error}");
    let message = error.to_string();
    for part in expected {
        assert!(message.contains(part), "{part:?} not in: {message}");
    }
}

#[test]
fn a_missing_certificate_file_fails_install_naming_variable_and_path() {
    let missing = path("no-such-ca.pem");
    let error = install_error(&[(CA_VAR, missing.clone())]);
    assert_invalid_env(&error, CA_VAR, &[&missing, "cannot read"]);

    let error = install_error(&[("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", missing.clone())]);
    assert_invalid_env(
        &error,
        "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
        &[&missing],
    );
}

#[test]
fn a_file_without_certificates_fails_install() {
    // A key is PEM but no certificate; the README is not PEM at all.
    for file in ["server.key", "README.md"] {
        let error = install_error(&[(CA_VAR, path(file))]);
        assert_invalid_env(&error, CA_VAR, &[&path(file), "no PEM certificate"]);
        assert!(!error.to_string().contains("BEGIN PRIVATE"), "{error}");
    }
}

#[test]
fn a_malformed_pem_certificate_fails_install() {
    let dir = std::env::temp_dir().join(format!("jobsight-otel-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for file in [&broken, &garbage] {
        let shown = file.display().to_string();
        let error = install_error(&[(CA_VAR, shown.clone())]);
        assert_invalid_env(&error, CA_VAR, &[&shown]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn half_a_client_identity_fails_install_naming_what_is_missing() {
    let error = install_error(&[("OTEL_EXPORTER_OTLP_CLIENT_KEY", path("client.key"))]);
    assert_invalid_env(
        &error,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        &["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "both"],
    );
    let error = install_error(&[(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        path("client.pem"),
    )]);
    assert_invalid_env(
        &error,
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        &["OTEL_EXPORTER_OTLP_CLIENT_KEY"],
    );
}

#[test]
fn a_client_key_that_does_not_fit_fails_install_without_showing_it() {
    // The server's key with the client's certificate.
    let error = install_error(&[
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path("client.pem")),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path("server.key")),
    ]);
    assert_invalid_env(
        &error,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        &[&path("server.key"), &path("client.pem")],
    );
    // A certificate where the key should be.
    let error = install_error(&[
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path("client.pem")),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path("client.pem")),
    ]);
    assert_invalid_env(
        &error,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        &["no PEM private key"],
    );
    assert!(!error.to_string().contains("MII"), "{error}");
}

#[test]
fn http_endpoints_never_read_the_certificate_files() {
    let _lock = serial();
    let missing = path("no-such-ca.pem");
    for protocol in ["grpc", "http/protobuf"] {
        let telemetry = install(&[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                "http://127.0.0.1:9".to_owned(),
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_owned(),
                protocol.to_owned(),
            ),
            (CA_VAR.to_owned(), missing.clone()),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY".to_owned(), missing.clone()),
        ])
        .unwrap();
        assert_eq!(telemetry.otlp_signals().len(), 3);
        drop(telemetry);
    }
}

#[test]
fn builtin_roots_are_mozillas_and_a_bundle_replaces_them() {
    let builtin = ClientTls::load(Signal::Traces, &TlsFiles::default()).unwrap();
    assert!(builtin.roots.len() > 100, "{}", builtin.roots.len());
    let files = TlsFiles {
        certificate: Some(EnvPath {
            variable: CA_VAR,
            path: fixture("ca.pem"),
        }),
        ..TlsFiles::default()
    };
    let bundle = ClientTls::load(Signal::Traces, &files).unwrap();
    assert_eq!(bundle.roots.len(), 1);
}

#[test]
fn the_http_client_keeps_the_cause_that_the_exporter_drops() {
    let receiver = tls_receiver(Front::Http, false);
    let runtime = ExportRuntime::start().unwrap();
    let caller = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/v1/traces", receiver.addr().port());
    let send = |files: &TlsFiles| {
        let last_error = Arc::new(TransportError::default());
        let client = ClientTls::load(Signal::Traces, files).unwrap().http_client(
            runtime.handle(),
            Duration::from_secs(5),
            Arc::clone(&last_error),
        );
        let request = Request::post(url.as_str())
            .header("content-type", "application/x-protobuf")
            .body(Bytes::new())
            .unwrap();
        let ok = caller.block_on(client.send_bytes(request)).is_ok();
        (ok, last_error.get())
    };

    // The built-in roots do not include the test CA.
    let (ok, cause) = send(&TlsFiles::default());
    assert!(!ok);
    let cause = cause.unwrap();
    assert!(cause.contains("UnknownIssuer"), "{cause}");

    // With it: a response (an empty body is an empty, valid request).
    let (ok, cause) = send(&TlsFiles {
        certificate: Some(EnvPath {
            variable: CA_VAR,
            path: fixture("ca.pem"),
        }),
        ..TlsFiles::default()
    });
    assert!(ok);
    assert_eq!(cause, None);
}

#[test]
fn a_wrong_ca_fails_every_export_clearly() {
    // A certificate that did not issue the receiver's, given as the CA:
    // install succeeds (it is a valid certificate), every export fails
    // the handshake and is counted, for both transports.
    for front in [Front::Grpc, Front::Http] {
        let (received, failures) =
            round_trip(front, "localhost", false, &[(CA_VAR, path("client.pem"))]);
        assert_eq!(received, None, "{front:?}");
        assert_eq!(failures.failed_span_exports, 1, "{front:?}: {failures}");
        assert_eq!(failures.dropped_spans, 1, "{front:?}: {failures}");
    }
    // The cause the HTTP client keeps names the problem.
    let receiver = tls_receiver(Front::Http, false);
    let runtime = ExportRuntime::start().unwrap();
    let caller = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let last_error = Arc::new(TransportError::default());
    let files = TlsFiles {
        certificate: Some(EnvPath {
            variable: CA_VAR,
            path: fixture("client.pem"),
        }),
        ..TlsFiles::default()
    };
    let client = ClientTls::load(Signal::Traces, &files)
        .unwrap()
        .http_client(
            runtime.handle(),
            Duration::from_secs(5),
            Arc::clone(&last_error),
        );
    let url = format!("https://localhost:{}/v1/traces", receiver.addr().port());
    let request = Request::post(url.as_str())
        .header("content-type", "application/x-protobuf")
        .body(Bytes::new())
        .unwrap();
    assert!(caller.block_on(client.send_bytes(request)).is_err());
    let cause = last_error.get().expect("a cause");
    assert!(cause.contains("UnknownIssuer"), "{cause}");
}
