//! The capture policy and the serializer, through the public API.

use super::*;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

fn all() -> ArgsPolicy {
    ArgsPolicy::new().all_jobs()
}

#[test]
fn off_by_default_and_opt_in_per_job_name() {
    let policy = ArgsPolicy::new();
    assert!(policy.capture("send_email", &json!({"to": "a"})).is_none());
    let policy = policy.job("send_email");
    assert!(policy.capture("send_email", &json!({"to": "a"})).is_some());
    assert!(policy.capture("SEND_EMAIL", &json!({"to": "a"})).is_none());
    assert!(policy.capture("other", &json!({"to": "a"})).is_none());
}

#[test]
fn output_is_the_same_compact_json_as_serde_json() {
    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(u8, bool),
        Struct { a: Option<u8>, b: f64 },
    }
    #[derive(Serialize)]
    struct S {
        s: String,
        n: i64,
        f: f32,
        list: Vec<E>,
        map: BTreeMap<u32, char>,
        bytes: serde_bytes_like::Bytes,
        unit: (),
        tuple: (u8, &'static str),
    }
    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }
    let value = S {
        s: "quote \" backslash \\ newline \n tab \t bell \u{7} é".into(),
        n: -42,
        f: 1.5,
        list: vec![
            E::Unit,
            E::New(1),
            E::Tuple(2, true),
            E::Struct { a: None, b: 0.25 },
        ],
        map: BTreeMap::from([(1, 'x'), (2, '"')]),
        bytes: serde_bytes_like::Bytes(vec![0, 255]),
        unit: (),
        tuple: (7, "seven"),
    };
    let ours = all().capture_always(&value);
    let theirs = serde_json::to_string(&value).unwrap();
    assert_eq!(ours.as_str(), theirs);
}

#[test]
fn masks_keys_case_insensitively_at_any_depth_and_in_arrays() {
    let value = json!({
        "user": "ada",
        "Password": "p1",
        "nested": {
            "deeper": [
                {"API_KEY": "k1", "keep": 1},
                {"x-api-key": "k2"},
                [{"access_token": {"even": "objects"}}]
            ],
            "Authorization": "Bearer abc",
            "client_secret": 5,
        },
        "list": [{"token": ["a", "b"]}],
    });
    let text = all().capture_always(&value).as_str().to_owned();
    for secret in ["p1", "k1", "k2", "objects", "Bearer", "\"a\""] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains(r#""keep":1"#), "{text}");
    assert!(text.contains(r#""user":"ada""#), "{text}");
    assert_eq!(text.matches(FILTERED).count(), 7, "{text}");
    let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reparsed["nested"]["deeper"][0]["API_KEY"], json!(FILTERED));
    assert_eq!(
        reparsed["nested"]["deeper"][2][0]["access_token"],
        json!(FILTERED)
    );
}

#[test]
fn struct_fields_and_user_patterns_are_masked() {
    #[derive(Serialize)]
    struct Payment {
        card_number: &'static str,
        cvv: u16,
        amount: u32,
        db_password: &'static str,
    }
    let policy = all().mask("Card-Number").mask("CVV");
    let text = policy
        .capture_always(&Payment {
            card_number: "4111",
            cvv: 123,
            amount: 10,
            db_password: "pw",
        })
        .as_str()
        .to_owned();
    assert_eq!(
        text,
        r#"{"card_number":"[FILTERED]","cvv":"[FILTERED]","amount":10,"db_password":"[FILTERED]"}"#
    );
    assert!(policy.is_masked("CardNumber"));
    assert!(!policy.is_masked("amount"));
}

#[test]
fn the_readme_example() {
    #[derive(Serialize)]
    struct ChargeCard {
        customer: u64,
        card_token: String,
        amount_cents: u64,
    }
    let policy = ArgsPolicy::new().job("ChargeCard").mask("customer");
    let args = ChargeCard {
        customer: 42,
        card_token: "tok_123".into(),
        amount_cents: 1200,
    };
    assert_eq!(
        policy.capture("ChargeCard", &args).unwrap().as_str(),
        r#"{"customer":"[FILTERED]","card_token":"[FILTERED]","amount_cents":1200}"#
    );
}

#[test]
fn huge_strings_are_cut_at_the_limit() {
    let huge = "x".repeat(50 * 1024 * 1024);
    let value = json!({ "blob": huge, "after": 1 });
    let policy = all().max_len(1000);
    let started = std::time::Instant::now();
    let captured = policy.capture_always(&value);
    assert!(
        captured.as_str().len() <= 1000,
        "{}",
        captured.as_str().len()
    );
    assert!(captured.as_str().ends_with(TRUNCATED_MARKER));
    assert!(captured.as_str().starts_with(r#"{"after":1,"blob":"xxx"#));
    // One pass over a 1000-byte prefix, not over 50 MB.
    assert!(started.elapsed() < std::time::Duration::from_millis(200));
}

#[test]
fn cut_strings_stay_escaped() {
    let value = vec!["\"\n".repeat(10_000)];
    let captured = all().max_len(100).capture_always(&value);
    let text = captured.as_str();
    assert!(text.starts_with(r#"["\"\n\"\n"#), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn multibyte_text_is_cut_on_a_char_boundary() {
    let value = vec!["é".repeat(5000)];
    let captured = all().max_len(101).capture_always(&value);
    assert!(captured.as_str().len() <= 101);
    assert!(captured.as_str().ends_with(TRUNCATED_MARKER));
}

/// A value whose `Serialize` impl nests forever without using memory.
struct Bottomless;
impl Serialize for Bottomless {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(&Bottomless)?;
        seq.end()
    }
}

/// The same, through maps and newtype variants.
struct BottomlessMap;
impl Serialize for BottomlessMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        enum Wrap {
            Inner(BottomlessMap),
        }
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("k", &Wrap::Inner(BottomlessMap))?;
        map.end()
    }
}

#[test]
fn endless_nesting_stops_at_the_depth_limit() {
    let text = all().max_depth(5).capture_always(&Bottomless).to_string();
    assert_eq!(text, r#"[[[[["[TOO DEEP]"]]]]]"#);
    let text = all().capture_always(&BottomlessMap).to_string();
    assert!(text.contains(TOO_DEEP), "{text}");
    assert!(text.len() < DEFAULT_MAX_LEN, "{text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap();
}

#[test]
fn deep_hostile_json_value_is_bounded() {
    // As deep as serde_json lets a parsed payload be (its recursion
    // limit is 128), with a huge string at the bottom.
    let depth = 120;
    let text = format!(
        "{}\"{}\"{}",
        "[".repeat(depth),
        "y".repeat(1_000_000),
        "]".repeat(depth)
    );
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let captured = all().capture_always(&value);
    assert!(captured.as_str().len() < 200, "{}", captured.as_str());
    assert!(captured.as_str().contains(TOO_DEEP));
}

#[test]
fn failing_and_panicking_impls_are_contained() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    struct Panics;
    impl Serialize for Panics {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("serialize exploded")
        }
    }
    let text = all().capture_always(&(1, Fails)).to_string();
    assert_eq!(text, format!("[1,{UNSERIALIZABLE}"));
    let text = all().capture_always(&Panics).to_string();
    assert_eq!(text, UNSERIALIZABLE);
}

#[test]
fn floats_stay_floats_and_parse_back_to_the_same_value() {
    // Regression (fuzz/args_masking): `29.0` was written as `29`, and
    // `1e300` as 301 digits.
    let values = json!([29.0, 1e300, -2.5e-9, 0.1, 123456789.0, f64::MAX]);
    let text = all().capture_always(&values).to_string();
    assert_eq!(
        text,
        "[29.0,1e300,-2.5e-9,0.1,123456789.0,1.7976931348623157e308]"
    );
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, values);
    let single = (0.1f32, 3.0f32, f32::NAN);
    let text = all().capture_always(&single).to_string();
    assert_eq!(text, "[0.1,3.0,null]");
}

#[test]
fn values_under_keys_too_long_to_check_are_masked() {
    // Regression (fuzz/args_masking): a map key over 256 bytes was cut
    // before matching, so a pattern past the cut went unseen.
    let long = format!("{}password", "x".repeat(MAX_KEY_LEN));
    let innocent = "y".repeat(MAX_KEY_LEN + 1);
    let map = BTreeMap::from([(long.as_str(), "hunter2"), (innocent.as_str(), "v")]);
    let text = all().capture_always(&map).to_string();
    assert!(!text.contains("hunter2"), "{text}");
    let back: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
    assert!(back.keys().all(|k| k.len() == MAX_KEY_LEN), "{text}");
    assert!(back.values().all(|v| v == FILTERED), "{text}");
    assert!(all().is_masked(&innocent));
    let pairs = all().mask_pairs([(long.as_str(), "hunter2")]);
    assert_eq!(pairs[0].1, FILTERED);
    assert_eq!(pairs[0].0.len(), MAX_KEY_LEN);
}

#[test]
fn a_key_type_that_wraps_itself_forever_is_contained() {
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct Key;
    impl Serialize for Key {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_newtype_struct("Key", self)
        }
    }
    let map = BTreeMap::from([(Key, 1)]);
    assert_eq!(all().capture_always(&map).as_str(), "{[UNSERIALIZABLE]");
}

#[test]
fn map_keys_that_are_not_strings_become_text() {
    let map = BTreeMap::from([(true, 1), (false, 2)]);
    assert_eq!(
        all().capture_always(&map).as_str(),
        r#"{"false":2,"true":1}"#
    );
    let bad = BTreeMap::from([(vec![1], 1)]);
    assert_eq!(all().capture_always(&bad).as_str(), "{[UNSERIALIZABLE]");
}

#[test]
fn pairs_are_masked_and_bounded() {
    let policy = ArgsPolicy::new().max_len(64);
    let long = "v".repeat(1000);
    let masked = policy.mask_pairs([
        ("traceparent", "00-abc"),
        ("X-Auth-Token", "t"),
        ("big", &long),
    ]);
    assert_eq!(masked[0], ("traceparent".into(), "00-abc".into()));
    assert_eq!(masked[1].1, FILTERED);
    assert_eq!(masked[2].1.len(), 64);
}
