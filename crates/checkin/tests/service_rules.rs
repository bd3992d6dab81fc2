//! Pings against local servers that apply each service's documented
//! acceptance rules and refuse a request the way the service would:
//! healthchecks.io's slug pattern, lowercase UUIDs, exit statuses, bodies
//! and `Ping-Body-Limit`, POST-only checks; Sentry's slugs and the
//! `monitor_config` that creates a monitor; Cronitor's `message` and
//! `host`; redirects.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jobsight_checkin::ping::{
    Cronitor, Delivery, Healthchecks, PingFormat, PingOptions, PingSink, SentryCrons,
};
use jobsight_core::checkin::{
    CheckinEvent, CheckinPolicy, CheckinSink, CheckinStatus, Checkins, RunId, Schedule,
};

// ---------------------------------------------------------------- server

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: HashMap<String, String>,
    body: Vec<u8>,
    content_type: Option<String>,
}

type Rule = dyn Fn(&Seen, &mut World) -> Response + Send + Sync;

/// What the emulated service knows and recorded.
#[derive(Default)]
struct World {
    /// healthchecks.io checks by slug or UUID: whether they take POST only.
    checks: HashMap<String, bool>,
    /// Pings a check recorded: (check, kind, body).
    pings: Vec<(String, String, Vec<u8>)>,
    /// Pings answered 200 but ignored (a GET to a POST-only check).
    ignored: usize,
    /// Sentry monitors by slug, with their configuration.
    monitors: HashMap<String, serde_json::Value>,
    /// Sentry check-ins recorded: (slug, status).
    checkins: Vec<(String, String)>,
    /// Sentry check-ins dropped after a 202.
    dropped: Vec<String>,
    body_limit: Option<usize>,
}

#[derive(Clone)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    world: Arc<Mutex<World>>,
    rule: Arc<Rule>,
}

async fn handle(State(server): State<Server>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), decode(v))
        })
        .collect();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        body,
        content_type: parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    server.seen.lock().unwrap().push(seen.clone());
    let mut world = server.world.lock().unwrap();
    (server.rule)(&seen, &mut world)
}

async fn serve(
    world: World,
    rule: impl Fn(&Seen, &mut World) -> Response + Send + Sync + 'static,
) -> (Server, String) {
    let server = Server {
        seen: Arc::default(),
        world: Arc::new(Mutex::new(world)),
        rule: Arc::new(rule),
    };
    let app = Router::new().fallback(handle).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (server, base)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_owned()).into_response()
}

// ------------------------------------------------------- healthchecks.io

/// healthchecks.io's ping endpoint: `/<uuid>[/<kind>]` and
/// `/<ping key>/<slug>[/<kind>]`, kind `start`, `fail`, `log` or an exit
/// status 0–255. A slug with an uppercase letter is 400 "invalid url
/// format"; any character outside `a-z0-9_-` (after decoding) or an
/// uppercase UUID matches no route: 404. Unknown checks are 404 unless
/// `create=1` (slugs). A POST-only check answers 200 to other methods and
/// ignores them. Every answer carries `Ping-Body-Limit` when set.
fn healthchecks(seen: &Seen, world: &mut World) -> Response {
    let mut response = hc_answer(seen, world);
    if let Some(limit) = world.body_limit {
        response
            .headers_mut()
            .insert("ping-body-limit", HeaderValue::from(limit));
    }
    response
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

fn hc_answer(seen: &Seen, world: &mut World) -> Response {
    const KEY: &str = "pk-123";
    let path = decode(&seen.path);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (check, kind) = match parts.as_slice() {
        [uuid] if is_uuid(uuid) => (uuid.to_string(), ""),
        [uuid, kind] if is_uuid(uuid) => (uuid.to_string(), *kind),
        [KEY, slug] => (slug.to_string(), ""),
        [KEY, slug, kind] => (slug.to_string(), *kind),
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let slug_chars = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !check.chars().all(slug_chars) || check.is_empty() {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if check.chars().any(|c| c.is_ascii_uppercase()) {
        return text(StatusCode::BAD_REQUEST, "invalid url format");
    }
    let kind = match kind {
        "" => "success".to_owned(),
        "start" | "fail" | "log" => kind.to_owned(),
        code if code.chars().all(|c| c.is_ascii_digit()) && !code.is_empty() => {
            match code.parse::<u32>() {
                Ok(n) if n <= 255 => format!("exit:{n}"),
                _ => return text(StatusCode::BAD_REQUEST, "invalid url format"),
            }
        }
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let post_only = match world.checks.get(&check) {
        Some(p) => *p,
        None if seen.query.get("create").map(String::as_str) == Some("1") && !is_uuid(&check) => {
            world.checks.insert(check.clone(), false);
            false
        }
        None => return text(StatusCode::NOT_FOUND, "not found"),
    };
    if post_only && seen.method != "POST" {
        world.ignored += 1;
        return text(StatusCode::OK, "OK");
    }
    let mut body = seen.body.clone();
    body.truncate(world.body_limit.unwrap_or(usize::MAX));
    world.pings.push((check, kind, body));
    text(StatusCode::OK, "OK")
}

fn hc_world(checks: &[(&str, bool)]) -> World {
    World {
        checks: checks.iter().map(|(c, p)| (c.to_string(), *p)).collect(),
        ..World::default()
    }
}

/// No retries; no coalescing (a test that sends more than the services'
/// rate limits a minute says so).
fn quick() -> PingOptions {
    PingOptions::default()
        .retries(0)
        .timeout(Duration::from_secs(5))
        .coalesce(false)
}

/// One successful and one failing run of each policy's monitor (the
/// failure with `message`), through `sink`; waits for the pings.
async fn runs(sink: &PingSink, policies: &[CheckinPolicy], message: &str) -> Checkins {
    let mut checkins = Checkins::new().sink(sink.clone());
    for p in policies {
        checkins = checkins.policy(p.clone());
    }
    checkins.validate().unwrap();
    for check in checkins.checks().to_vec() {
        checkins.start_run(&check).finish(CheckinStatus::Ok, 0);
        checkins
            .start_run(&check)
            .finish_with_message(CheckinStatus::Error, 1, message);
    }
    assert!(
        sink.flush(Duration::from_secs(10)).await,
        "{:?}",
        sink.stats()
    );
    checkins
}

fn kinds(world: &World) -> Vec<(String, String)> {
    world
        .pings
        .iter()
        .map(|(c, k, _)| (c.clone(), k.clone()))
        .collect()
}

#[tokio::test]
async fn healthchecks_uppercase_names_are_slugified_not_refused() {
    let (server, base) = serve(
        hc_world(&[("nightlyreport", false), ("string", false)]),
        healthchecks,
    )
    .await;
    let sink = PingSink::spawn(Healthchecks::slugs("pk-123").base_url(&base), quick()).unwrap();
    runs(
        &sink,
        &[
            CheckinPolicy::job("NightlyReport"),
            CheckinPolicy::job("String"),
        ],
        "boom",
    )
    .await;
    assert_eq!(sink.stats().failed(), 0, "{:?}", sink.stats().last_error());
    let world = server.world.lock().unwrap();
    let got = kinds(&world);
    assert_eq!(got.len(), 8, "{got:?}");
    assert_eq!(got[0], ("nightlyreport".into(), "start".into()));
    assert_eq!(got[1], ("nightlyreport".into(), "success".into()));
    assert_eq!(got[3], ("nightlyreport".into(), "fail".into()));
    assert_eq!(got[4].0, "string");
}

#[tokio::test]
async fn healthchecks_spaces_and_punctuation_become_the_services_slug() {
    let (server, base) = serve(
        hc_world(&[
            ("nightly-report", false),
            ("reportv2", false),
            ("abc", false),
        ]),
        healthchecks,
    )
    .await;
    let sink = PingSink::spawn(Healthchecks::slugs("pk-123").base_url(&base), quick()).unwrap();
    runs(
        &sink,
        &[
            CheckinPolicy::job("Nightly Report"),
            CheckinPolicy::job("report.v2"),
            CheckinPolicy::job("a~b:c"),
        ],
        "x",
    )
    .await;
    assert_eq!(sink.stats().sent(), 12, "{:?}", sink.stats().last_error());
    let world = server.world.lock().unwrap();
    let checks: HashSet<String> = world.pings.iter().map(|p| p.0.clone()).collect();
    assert_eq!(
        checks,
        HashSet::from(["nightly-report".into(), "reportv2".into(), "abc".into()])
    );
}

#[tokio::test]
async fn healthchecks_uppercase_uuids_are_lowercased() {
    let uuid = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
    let (server, base) = serve(hc_world(&[(uuid, false)]), healthchecks).await;
    let format = Healthchecks::uuids()
        .uuid("nightly", uuid.to_ascii_uppercase())
        .base_url(&base);
    let sink = PingSink::spawn(format, quick()).unwrap();
    runs(&sink, &[CheckinPolicy::job("nightly")], "x").await;
    assert_eq!(sink.stats().sent(), 4, "{:?}", sink.stats().last_error());
    assert_eq!(server.world.lock().unwrap().pings.len(), 4);
}

#[tokio::test]
async fn healthchecks_post_only_checks_get_every_ping_with_the_message() {
    let (server, base) = serve(hc_world(&[("nightly", true)]), healthchecks).await;
    let sink = PingSink::spawn(Healthchecks::slugs("pk-123").base_url(&base), quick()).unwrap();
    runs(&sink, &[CheckinPolicy::job("nightly")], "disk full").await;
    let world = server.world.lock().unwrap();
    assert_eq!(world.ignored, 0);
    assert_eq!(world.pings.len(), 4);
    assert_eq!(world.pings[3].1, "fail");
    assert_eq!(world.pings[3].2, b"disk full");
    let seen = server.seen.lock().unwrap();
    assert!(seen.iter().all(|s| s.method == "POST"));
    assert!(
        seen[3]
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        seen[3].content_type
    );
}

#[tokio::test]
async fn healthchecks_bodies_keep_within_the_announced_limit() {
    let mut world = hc_world(&[("nightly", false)]);
    world.body_limit = Some(64);
    let (server, base) = serve(world, healthchecks).await;
    let sink = PingSink::spawn(Healthchecks::slugs("pk-123").base_url(&base), quick()).unwrap();
    let message = format!("{}THE-END", "x".repeat(5000));
    runs(&sink, &[CheckinPolicy::job("nightly")], &message).await;
    let seen = server.seen.lock().unwrap();
    let failure = &seen[3];
    assert!(failure.body.len() <= 64, "{}", failure.body.len());
    let body = String::from_utf8(failure.body.clone()).unwrap();
    assert!(body.ends_with("THE-END"), "{body}");
    assert!(body.contains("bytes cut"), "{body}");
}

#[tokio::test]
async fn healthchecks_our_own_body_limit_applies_before_any_answer() {
    let (server, base) = serve(hc_world(&[("nightly", false)]), healthchecks).await;
    let format = Healthchecks::slugs("pk-123")
        .base_url(&base)
        .body_limit(100);
    let sink = PingSink::spawn(format, quick()).unwrap();
    runs(
        &sink,
        &[CheckinPolicy::job("nightly")],
        &format!("{}z", "y".repeat(10_000)),
    )
    .await;
    let body = server.seen.lock().unwrap()[3].body.clone();
    assert!((90..=100).contains(&body.len()), "{}", body.len());
    assert!(body.ends_with(b"yyz"));
}

/// Ends runs of `nightly` with the given statuses and exit statuses.
async fn ends(sink: &PingSink, ends: &[(CheckinStatus, i32)]) {
    let checkins = Checkins::new()
        .policy(CheckinPolicy::job("nightly"))
        .sink(sink.clone());
    let check = checkins.find("q", "nightly").unwrap();
    for (status, code) in ends {
        checkins.start_run(&check).finish(*status, *code);
    }
    assert!(sink.flush(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn healthchecks_exit_statuses_match_the_outcome_and_the_services_range() {
    let uuid = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";
    let (server, base) = serve(hc_world(&[(uuid, false)]), healthchecks).await;
    let format = Healthchecks::uuids()
        .uuid("nightly", uuid)
        .exit_status(true)
        .base_url(&base);
    let sink = PingSink::spawn(format, quick()).unwrap();
    ends(
        &sink,
        &[
            (CheckinStatus::Error, 0),
            (CheckinStatus::Error, 300),
            (CheckinStatus::Error, -5),
            (CheckinStatus::Ok, 0),
            (CheckinStatus::Error, 101),
        ],
    )
    .await;
    assert_eq!(sink.stats().failed(), 0, "{:?}", sink.stats().last_error());
    let world = server.world.lock().unwrap();
    let got: Vec<String> = world
        .pings
        .iter()
        .filter(|p| p.1 != "start")
        .map(|p| p.1.clone())
        .collect();
    assert_eq!(got, ["exit:1", "exit:255", "exit:1", "exit:0", "exit:101"]);
}

#[tokio::test]
async fn names_no_service_can_address_are_refused_naming_the_policy() {
    let sink = PingSink::spawn(Healthchecks::slugs("pk"), quick()).unwrap();
    for name in ["!!!", "café", ""] {
        let err = Checkins::new()
            .policy(CheckinPolicy::job("ok-name"))
            .policy(CheckinPolicy::job("x").monitor_name(name))
            .sink(sink.clone())
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("policy `{name}`")), "{err}");
    }
    let sentry = PingSink::spawn(SentryCrons::from_dsn("https://k@h/1").unwrap(), quick()).unwrap();
    let long = "a".repeat(51);
    let err = Checkins::new()
        .policy(CheckinPolicy::job(long.as_str()))
        .sink(sentry.clone())
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains(&long) && err.contains("50"), "{err}");
    assert!(
        sentry
            .check_policy(&CheckinPolicy::job("NightlyReport"))
            .is_ok()
    );
    // A monitor without a UUID is left to the other sinks (skipped here).
    let uuids = PingSink::spawn(Healthchecks::uuids(), quick()).unwrap();
    assert!(uuids.check_policy(&CheckinPolicy::job("!!!")).is_ok());
    // A UUID that is not one fails at start, also behind a `Box<dyn PingFormat>`.
    let chosen: Box<dyn PingFormat> = Box::new(Healthchecks::uuids().uuid("n", "not-a-uuid"));
    let bad = PingSink::spawn(chosen, quick());
    assert!(bad.unwrap_err().to_string().contains("Healthchecks::uuid"));
}

// ------------------------------------------------------------ Sentry

/// Sentry's check-in endpoint: `/api/<project>/cron/<slug>/<key>/`. The
/// slug is slugified and cut to 50 by the service. A JSON body must be an
/// object with a `status` and, if present, a valid `monitor_config`
/// (creates or updates the monitor); an invalid one is dropped after the
/// 202. A check-in of an unknown monitor without a configuration is dropped
/// after the 202.
fn sentry(seen: &Seen, world: &mut World) -> Response {
    let parts: Vec<&str> = seen.path.trim_matches('/').split('/').collect();
    let ["api", "42", "cron", slug, "pubkey"] = parts.as_slice() else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let slug = sentry_slugify(&decode(slug));
    let (status, config) = if seen.method == "POST" {
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&seen.body) else {
            return text(StatusCode::BAD_REQUEST, "invalid json");
        };
        let status = body["status"].as_str().unwrap_or("").to_owned();
        (status, body.get("monitor_config").cloned())
    } else {
        (seen.query.get("status").cloned().unwrap_or_default(), None)
    };
    if !matches!(status.as_str(), "in_progress" | "ok" | "error") {
        return text(StatusCode::BAD_REQUEST, "invalid status");
    }
    if let Some(config) = config {
        if let Err(why) = valid_monitor_config(&config) {
            world.dropped.push(format!("{slug}: {why}"));
            return text(StatusCode::ACCEPTED, "");
        }
        world.monitors.insert(slug.clone(), config);
    }
    if world.monitors.contains_key(&slug) {
        world.checkins.push((slug, status));
    } else {
        world.dropped.push(format!("{slug}: no monitor"));
    }
    text(StatusCode::ACCEPTED, "")
}

fn sentry_slugify(name: &str) -> String {
    let lower = name.to_lowercase();
    let kept: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .collect();
    let mut out = String::new();
    for (i, word) in kept.split([' ', '-']).filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            out.push('-');
        }
        out.push_str(word);
    }
    let mut out = out.trim_matches(['-', '_']).to_owned();
    out.truncate(50);
    out
}

/// Sentry's `monitor_config` rules: a schedule (crontab of five fields, or
/// interval of a whole value ≥ 1 and a unit), whole minutes ≥ 1 for the
/// margin and the runtime (at most 28 days), a time zone name, thresholds
/// ≥ 1.
fn valid_monitor_config(config: &serde_json::Value) -> Result<(), String> {
    let obj = config.as_object().ok_or("not an object")?;
    let schedule = obj.get("schedule").ok_or("no schedule")?;
    match schedule["type"].as_str() {
        Some("crontab") => {
            let value = schedule["value"].as_str().ok_or("crontab value")?;
            if value.split_whitespace().count() != 5 {
                return Err(format!("crontab `{value}`"));
            }
        }
        Some("interval") => {
            let n = schedule["value"].as_u64().ok_or("interval value")?;
            let unit = schedule["unit"].as_str().ok_or("interval unit")?;
            if n < 1 || !["year", "month", "week", "day", "hour", "minute"].contains(&unit) {
                return Err(format!("interval {n} {unit}"));
            }
        }
        _ => return Err("schedule type".into()),
    }
    for key in ["checkin_margin", "max_runtime"] {
        if let Some(v) = obj.get(key) {
            let n = v.as_u64().ok_or(format!("{key} not a whole number"))?;
            if !(1..=40_320).contains(&n) {
                return Err(format!("{key} {n}"));
            }
        }
    }
    for key in ["failure_issue_threshold", "recovery_threshold"] {
        if let Some(v) = obj.get(key)
            && v.as_u64().is_none_or(|n| n < 1)
        {
            return Err(key.to_owned());
        }
    }
    if let Some(tz) = obj.get("timezone")
        && tz.as_str().is_none_or(|t| t.is_empty())
    {
        return Err("timezone".into());
    }
    for key in obj.keys() {
        if ![
            "schedule",
            "checkin_margin",
            "max_runtime",
            "timezone",
            "failure_issue_threshold",
            "recovery_threshold",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("unknown field {key}"));
        }
    }
    Ok(())
}

fn sentry_dsn(base: &str) -> String {
    base.replace("http://", "http://pubkey@") + "/42"
}

#[tokio::test]
async fn sentry_creates_the_monitor_from_the_policy_on_the_first_check_in() {
    let (server, base) = serve(World::default(), sentry).await;
    let format = SentryCrons::from_dsn(&sentry_dsn(&base))
        .unwrap()
        .environment("production")
        .failure_issue_threshold(2);
    let sink = PingSink::spawn(format, quick()).unwrap();
    let policy = CheckinPolicy::job("NightlyReport")
        .schedule(Schedule::cron("30 2 * * *", "Europe/Berlin").unwrap())
        .grace(Duration::from_secs(90))
        .max_runtime(Duration::from_secs(3600));
    let checkins = runs(&sink, &[policy], "boom").await;
    {
        let world = server.world.lock().unwrap();
        assert!(world.dropped.is_empty(), "{:?}", world.dropped);
        assert_eq!(
            world.checkins,
            [
                ("nightlyreport".into(), "in_progress".into()),
                ("nightlyreport".into(), "ok".into()),
                ("nightlyreport".into(), "in_progress".into()),
                ("nightlyreport".into(), "error".into()),
            ]
        );
        let config = &world.monitors["nightlyreport"];
        assert_eq!(
            *config,
            serde_json::json!({
                "schedule": {"type": "crontab", "value": "30 2 * * *"},
                "timezone": "Europe/Berlin",
                "checkin_margin": 2,
                "max_runtime": 60,
                "failure_issue_threshold": 2,
            })
        );
    }
    {
        let seen = server.seen.lock().unwrap();
        let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
        // The configuration goes once, then plain check-ins.
        assert_eq!(methods, ["POST", "GET", "GET", "GET"]);
        assert!(
            seen.iter()
                .all(|s| s.path == "/api/42/cron/nightlyreport/pubkey/")
        );
        let first: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(first["environment"], "production");
        assert_eq!(first["status"], "in_progress");
        assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    }
    // A changed policy goes out again with the next check-in.
    let changed = CheckinPolicy::job("NightlyReport")
        .schedule(Schedule::every(Duration::from_secs(2 * 3600)))
        .grace(Duration::from_secs(600));
    assert!(checkins.update_policy(changed));
    let check = checkins.checks()[0].clone();
    checkins.start_run(&check).finish(CheckinStatus::Ok, 0);
    assert!(sink.flush(Duration::from_secs(10)).await);
    let world = server.world.lock().unwrap();
    assert_eq!(
        world.monitors["nightlyreport"],
        serde_json::json!({
            "schedule": {"type": "interval", "value": 2, "unit": "hour"},
            "checkin_margin": 10,
            "failure_issue_threshold": 2,
        })
    );
    assert_eq!(world.checkins.len(), 6);
}

#[tokio::test]
async fn sentry_odd_intervals_and_short_margins_are_whole_minutes() {
    let (server, base) = serve(World::default(), sentry).await;
    let sink =
        PingSink::spawn(SentryCrons::from_dsn(&sentry_dsn(&base)).unwrap(), quick()).unwrap();
    let policy = CheckinPolicy::job("every-90s")
        .schedule(Schedule::every(Duration::from_secs(90)))
        .grace(Duration::from_secs(5))
        .max_runtime(Duration::from_millis(200));
    runs(&sink, &[policy], "x").await;
    let world = server.world.lock().unwrap();
    assert!(world.dropped.is_empty(), "{:?}", world.dropped);
    assert_eq!(
        world.monitors["every-90s"],
        serde_json::json!({
            "schedule": {"type": "interval", "value": 2, "unit": "minute"},
            "checkin_margin": 1,
            "max_runtime": 1,
        })
    );
}

#[tokio::test]
async fn sentry_environments_the_service_would_drop_fail_at_start() {
    let dsn = "https://k@o1.ingest.sentry.io/42";
    for env in [
        "e".repeat(65),
        "has space".into(),
        "a/b".into(),
        String::new(),
    ] {
        let err = PingSink::spawn(
            SentryCrons::from_dsn(dsn).unwrap().environment(env.clone()),
            quick(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SentryCrons::environment"), "{env}: {err}");
    }
    assert!(
        PingSink::spawn(
            SentryCrons::from_dsn(dsn)
                .unwrap()
                .environment("e".repeat(64)),
            quick()
        )
        .is_ok()
    );
}

// ----------------------------------------------------------- Cronitor

#[tokio::test]
async fn cronitor_gets_the_message_and_the_host() {
    let (server, base) = serve(World::default(), |_, _| text(StatusCode::OK, "")).await;
    let sink = PingSink::spawn(
        Cronitor::new("KEY").base_url(&base).host("worker-7"),
        quick(),
    )
    .unwrap();
    let long = format!("{}tail", "m".repeat(3000));
    runs(&sink, &[CheckinPolicy::job("nightly")], &long).await;
    let seen = server.seen.lock().unwrap();
    assert!(seen.iter().all(|s| s.query["host"] == "worker-7"));
    let failure = &seen[3].query;
    assert_eq!(failure["state"], "fail");
    assert_eq!(failure["status_code"], "1");
    assert_eq!(failure["message"].chars().count(), 2000);
    assert!(failure["message"].ends_with("tail"));
    assert!(!seen[0].query.contains_key("message"));
    assert!(!seen[0].query.contains_key("status_code"));
}

#[tokio::test]
async fn cronitor_an_error_is_never_status_code_0() {
    let (server, base) = serve(World::default(), |_, _| text(StatusCode::OK, "")).await;
    let sink = PingSink::spawn(Cronitor::new("KEY").base_url(&base), quick()).unwrap();
    ends(
        &sink,
        &[(CheckinStatus::Error, 0), (CheckinStatus::Error, 1000)],
    )
    .await;
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen[1].query["status_code"], "1");
    assert_eq!(seen[3].query["status_code"], "255");
}

// ---------------------------------------------------------- redirects

/// `/moved/…` answers 308 to `/real/…`; `/loop/…` redirects to itself;
/// `/real/…` is healthchecks.io.
fn redirecting(seen: &Seen, world: &mut World) -> Response {
    let to = |status: StatusCode, location: String| {
        let mut headers = HeaderMap::new();
        headers.insert("location", HeaderValue::from_str(&location).unwrap());
        (status, headers, "").into_response()
    };
    let query = seen
        .query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    if let Some(rest) = seen.path.strip_prefix("/moved") {
        return to(
            StatusCode::PERMANENT_REDIRECT,
            format!("/real{rest}?{query}"),
        );
    }
    if seen.path.starts_with("/loop") {
        return to(StatusCode::FOUND, format!("{}?{query}", seen.path));
    }
    if let Some(rest) = seen.path.strip_prefix("/real") {
        let inner = Seen {
            path: rest.to_owned(),
            ..seen.clone()
        };
        return healthchecks(&inner, world);
    }
    text(StatusCode::NOT_FOUND, "")
}

#[tokio::test]
async fn redirects_are_followed_with_method_and_body() {
    let (server, base) = serve(hc_world(&[("nightly", true)]), redirecting).await;
    let format = Healthchecks::slugs("pk-123").base_url(&format!("{base}/moved"));
    let sink = PingSink::spawn(format, quick()).unwrap();
    runs(&sink, &[CheckinPolicy::job("nightly")], "disk full").await;
    assert_eq!(sink.stats().sent(), 4, "{:?}", sink.stats().last_error());
    let world = server.world.lock().unwrap();
    assert_eq!(world.pings.len(), 4);
    assert_eq!(world.pings[3].2, b"disk full");
}

#[tokio::test]
async fn endless_redirects_are_failures_never_sent() {
    let (server, base) = serve(hc_world(&[("nightly", false)]), redirecting).await;
    let format = Healthchecks::slugs("pk-123").base_url(&format!("{base}/loop"));
    let sink = PingSink::spawn(format, quick()).unwrap();
    runs(&sink, &[CheckinPolicy::job("nightly")], "x").await;
    assert_eq!((sink.stats().sent(), sink.stats().failed()), (0, 4));
    assert!(
        sink.stats().last_error().unwrap().contains("redirects"),
        "{:?}",
        sink.stats().last_error()
    );
    // Each ping: the first request and MAX_REDIRECTS more.
    assert_eq!(server.seen.lock().unwrap().len(), 4 * 4);
}

// -------------------------------------------------------- rate limits

#[tokio::test]
async fn a_job_faster_than_the_rate_limit_is_coalesced_keeping_the_failure() {
    // healthchecks.io's limit: more than 5 pings of a check a minute are 429.
    let limited = |seen: &Seen, world: &mut World| {
        if world.pings.len() >= 5 {
            return text(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        }
        healthchecks(seen, world)
    };
    let (server, base) = serve(hc_world(&[("fast", false)]), limited).await;
    let format = Healthchecks::slugs("pk-123").base_url(&base).per_minute(5);
    let sink = PingSink::spawn(format, quick().coalesce(true)).unwrap();
    let checkins = Checkins::new()
        .policy(CheckinPolicy::job("fast"))
        .sink(sink.clone());
    let check = checkins.find("q", "fast").unwrap();
    // 2 runs fit with a start left over; then 10 more runs, one failing.
    for i in 0..12 {
        let status = if i == 6 {
            CheckinStatus::Error
        } else {
            CheckinStatus::Ok
        };
        checkins.start_run(&check).finish(status, 0);
    }
    // Not all can go within the minute: the held end waits.
    assert!(!sink.flush(Duration::from_millis(500)).await);
    let stats = sink.stats();
    assert_eq!(stats.failed(), 0, "{:?}", stats.last_error());
    assert_eq!(stats.sent(), 5);
    // 24 events: 5 sent, 1 end held, the rest coalesced.
    assert_eq!(stats.coalesced(), 18);
    assert!(stats.last_error().unwrap().contains("coalesced"));
    assert_eq!(server.world.lock().unwrap().pings.len(), 5);
    // The held end is the failure (kept over the later successes); it goes
    // out when the sink closes.
    drop(checkins);
    let receipt_sink = sink.clone();
    drop(sink);
    let _ = receipt_sink.flush(Duration::from_millis(100)).await;
    drop(receipt_sink);
    for _ in 0..200 {
        if server.seen.lock().unwrap().len() > 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert!(seen[5].path.ends_with("/fail"), "{}", seen[5].path);
}

// ------------------------------------------------ blocking, one-shot use

#[test]
fn a_blocking_program_sends_start_and_end_independently_and_learns_the_outcome() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The service hangs on `/start` and answers the rest.
    let (server, base) = runtime.block_on(serve(hc_world(&[("nightly", false)]), |seen, world| {
        if seen.path.ends_with("/start") {
            world.ignored += 1;
            return text(StatusCode::SERVICE_UNAVAILABLE, "");
        }
        healthchecks(seen, world)
    }));
    let hang = {
        let server = server.clone();
        move || server.world.lock().unwrap().ignored
    };
    let pings = PingSink::spawn_thread(
        Healthchecks::slugs("pk-123").base_url(&base),
        PingOptions::default()
            .concurrency(2)
            .retries(1)
            .backoff(Duration::from_secs(30), Duration::from_secs(30)),
    )
    .unwrap();
    let policy = Arc::new(CheckinPolicy::job("nightly"));
    let run = RunId::new();
    let start = pings.send(&CheckinEvent::new(
        policy.clone(),
        run,
        CheckinStatus::InProgress,
    ));
    let end = pings.send(
        &CheckinEvent::new(policy, run, CheckinStatus::Error)
            .with_exit_status(2)
            .with_message("exit 2"),
    );
    // The end is accepted while the start waits 30 s for its retry.
    assert_eq!(end.wait(Duration::from_secs(10)), Delivery::Accepted);
    assert_eq!(start.wait(Duration::from_millis(50)), Delivery::Pending);
    assert_eq!(hang(), 1);
    let world = server.world.lock().unwrap();
    assert_eq!(world.pings.len(), 1);
    assert_eq!(world.pings[0].1, "fail");
    assert_eq!(world.pings[0].2, b"exit 2");
}
