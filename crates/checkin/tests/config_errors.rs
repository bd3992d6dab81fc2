//! Every setting of the check-in configuration file given a wrong value:
//! `parse_config` fails naming the setting (with the policy it is in) and
//! what the setting accepts.

use jobsight_checkin::parse_config;

/// A policy entry with `field: value` added to a valid base.
fn entry(base: &str, field: &str, value: &str) -> String {
    format!(r#"{{ "policies": [ {{ "job": "ok" }}, {{ {base}"{field}": {value} }} ] }}"#)
}

#[test]
fn every_setting_with_a_wrong_value_is_named_with_what_it_accepts() {
    let duration = &["`250ms`", "`30s`", "`5m`"][..];
    let text = &["a string"][..];
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("job", entry("", "job", "42"), text),
        ("queue", entry("", "queue", "[\"emails\"]"), text),
        ("monitor", entry(r#""job": "j", "#, "monitor", "true"), text),
        (
            "interval",
            entry(r#""job": "j", "#, "interval", r#""5 minutes""#),
            duration,
        ),
        (
            "interval",
            entry(r#""job": "j", "#, "interval", "-5"),
            duration,
        ),
        (
            "interval",
            entry(r#""job": "j", "#, "interval", "0"),
            &["more than zero"],
        ),
        (
            "grace",
            entry(r#""job": "j", "#, "grace", r#""soon""#),
            duration,
        ),
        (
            "max_runtime",
            entry(r#""job": "j", "#, "max_runtime", "1.5"),
            duration,
        ),
        (
            "cron",
            entry(r#""job": "j", "#, "cron", r#""every day""#),
            &["5 fields"],
        ),
        (
            "timezone",
            entry(
                r#""job": "j", "cron": "0 2 * * *", "#,
                "timezone",
                r#""Mars/Olympus""#,
            ),
            &["IANA"],
        ),
        (
            "interval",
            entry(r#""job": "j", "cron": "0 2 * * *", "#, "interval", "60"),
            &["exclude each other"],
        ),
        (
            "queue",
            entry(r#""job": "j", "#, "queue", r#""q""#),
            &["exactly one of `job` and `queue`"],
        ),
        (
            "gracee",
            entry(r#""job": "j", "#, "gracee", r#""1m""#),
            &["`grace`", "`max_runtime`"],
        ),
    ];
    let mut failures = Vec::new();
    for (setting, json, accepted) in &cases {
        let message = match parse_config(json) {
            Ok(_) => {
                failures.push(format!("{setting}: accepted {json}"));
                continue;
            }
            Err(error) => error.to_string(),
        };
        if !message.contains(setting) {
            failures.push(format!("{setting}: not named in {message:?}"));
        }
        for part in *accepted {
            if !message.contains(part) {
                failures.push(format!("{setting}: {part:?} not in {message:?}"));
            }
        }
        if !message.contains("policies[1]") && !message.contains("policy `j`") {
            failures.push(format!("{setting}: the policy is not named in {message:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn messages_read_well() {
    let json = r#"{ "policies": [ { "job": "NightlyReport", "grace": "10 minutes" } ] }"#;
    let message = parse_config(json)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        message,
        "check-in configuration: policies[0].grace: duration `10 minutes`: expected a whole \
         number of seconds or a string with a unit: `250ms`, `30s`, `5m`, `2h`, `1d`"
    );
    // Syntax errors keep serde's line and column.
    let message = parse_config("{ \"policies\": [ ")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("line 1"), "{message}");
}
