//! `--ping-url`: which service a URL belongs to, from its form.

use std::fmt;

/// A ping URL, recognised.
#[derive(Clone, PartialEq, Eq)]
pub enum PingUrl {
    /// healthchecks.io (or self-hosted) by check UUID: `<base>/<uuid>`.
    HealthchecksUuid {
        /// Everything before the UUID.
        base: String,
        /// The check's UUID.
        uuid: String,
    },
    /// healthchecks.io by slug: `https://hc-ping.com/<ping key>/<slug>`.
    HealthchecksSlug {
        /// Everything before the key.
        base: String,
        /// The project's ping key.
        key: String,
        /// The check's slug.
        slug: String,
    },
    /// Cronitor: `https://cronitor.link/p/<key>/<monitor>`.
    Cronitor {
        /// `https://cronitor.link`.
        base: String,
        /// The API key.
        key: String,
        /// The monitor's key.
        monitor: String,
    },
    /// A Sentry DSN (`https://<key>@<host>/<project>`), or a Sentry cron
    /// URL (`https://<host>/api/<project>/cron/<monitor>/<key>/`).
    Sentry {
        /// The DSN.
        dsn: String,
        /// The monitor's slug, when the URL names it.
        monitor: Option<String>,
    },
    /// A URL with placeholders (`{status}`, `{run_id}`, …).
    Template(String),
    /// Any other URL, pinged healthchecks-style: `URL/start`, `URL/<exit
    /// status>`.
    Plain {
        /// Everything before the last path segment.
        base: String,
        /// The last path segment.
        last: String,
    },
}

/// Shows the kind and host only: ping URLs carry keys.
impl fmt::Debug for PingUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PingUrl::HealthchecksUuid { .. } => "HealthchecksUuid",
            PingUrl::HealthchecksSlug { .. } => "HealthchecksSlug",
            PingUrl::Cronitor { .. } => "Cronitor",
            PingUrl::Sentry { .. } => "Sentry",
            PingUrl::Template(_) => "Template",
            PingUrl::Plain { .. } => "Plain",
        };
        write!(f, "PingUrl::{kind}")
    }
}

/// Placeholders a template may use.
const PLACEHOLDERS: [&str; 5] = [
    "{monitor}",
    "{status}",
    "{run_id}",
    "{exit_status}",
    "{duration_ms}",
];

impl PingUrl {
    /// Recognises `url`; the error says what was expected (without the
    /// URL's path, which holds the key).
    pub fn parse(url: &str) -> Result<PingUrl, String> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            let host = url.split('/').next().unwrap_or("");
            return Err(format!("`{host}/…` has no scheme: write https://{host}/…"));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{scheme}://` is not http:// or https://"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['{', '}']) {
            return Err("no host in the URL".to_owned());
        }
        if url.contains('{') {
            let mut rest = url.to_owned();
            for p in PLACEHOLDERS {
                rest = rest.replace(p, "");
            }
            if rest.contains(['{', '}']) {
                return Err(format!(
                    "unknown placeholder in the template; known: {}",
                    PLACEHOLDERS.join(" ")
                ));
            }
            return Ok(PingUrl::Template(url.to_owned()));
        }
        if path.contains(['?', '#']) {
            return Err(
                "a query string is only kept in a template (with {status} or another placeholder)"
                    .to_owned(),
            );
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let origin = format!("{scheme}://{host}");
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let Some((key, _)) = authority.rsplit_once('@') {
            // A DSN: key@host/[path/]project.
            if segments
                .last()
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
            {
                let _ = key;
                return Ok(PingUrl::Sentry {
                    dsn: url.trim_end_matches('/').to_owned(),
                    monitor: None,
                });
            }
            return Err("user info in a ping URL is only read from a Sentry DSN (https://<key>@<host>/<project id>)".to_owned());
        }
        if let Some(i) = segments.iter().position(|s| *s == "api")
            && let [project, "cron", monitor, key, ..] = &segments[i + 1..]
            && project.bytes().all(|b| b.is_ascii_digit())
        {
            let prefix: String = segments[..i].iter().map(|s| format!("/{s}")).collect();
            return Ok(PingUrl::Sentry {
                dsn: format!("{scheme}://{key}@{host}{prefix}/{project}"),
                monitor: Some((*monitor).to_owned()),
            });
        }
        if let ["p", key, monitor, rest @ ..] = segments.as_slice()
            && (host == "cronitor.link" || host.ends_with(".cronitor.link"))
        {
            if !rest.is_empty() {
                return Err("a Cronitor URL is https://cronitor.link/p/<key>/<monitor>".to_owned());
            }
            return Ok(PingUrl::Cronitor {
                base: origin,
                key: (*key).to_owned(),
                monitor: (*monitor).to_owned(),
            });
        }
        let Some((last, before)) = segments.split_last() else {
            return Err("the URL has no path: expected e.g. https://hc-ping.com/<uuid>".to_owned());
        };
        let prefix: String = before.iter().map(|s| format!("/{s}")).collect();
        if is_uuid(last) {
            return Ok(PingUrl::HealthchecksUuid {
                base: format!("{origin}{prefix}"),
                uuid: last.to_ascii_lowercase(),
            });
        }
        if host == "hc-ping.com" {
            return match before {
                [key] => Ok(PingUrl::HealthchecksSlug {
                    base: origin,
                    key: (*key).to_owned(),
                    slug: (*last).to_owned(),
                }),
                _ => Err(
                    "expected https://hc-ping.com/<uuid> or https://hc-ping.com/<ping key>/<slug>"
                        .to_owned(),
                ),
            };
        }
        Ok(PingUrl::Plain {
            base: format!("{origin}{prefix}"),
            last: (*last).to_owned(),
        })
    }
}

/// 8-4-4-4-12 hexadecimal digits.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "5bf3a9f2-64b6-4b4c-a5a4-6a1c1f2e8b1d";

    #[test]
    fn forms() {
        assert_eq!(
            PingUrl::parse(&format!("https://hc-ping.com/{UUID}")),
            Ok(PingUrl::HealthchecksUuid {
                base: "https://hc-ping.com".into(),
                uuid: UUID.into()
            })
        );
        assert_eq!(
            PingUrl::parse(&format!(
                "http://127.0.0.1:8000/ping/{}/",
                UUID.to_uppercase()
            )),
            Ok(PingUrl::HealthchecksUuid {
                base: "http://127.0.0.1:8000/ping".into(),
                uuid: UUID.into()
            })
        );
        assert_eq!(
            PingUrl::parse("https://hc-ping.com/pk123/nightly-backup"),
            Ok(PingUrl::HealthchecksSlug {
                base: "https://hc-ping.com".into(),
                key: "pk123".into(),
                slug: "nightly-backup".into()
            })
        );
        assert_eq!(
            PingUrl::parse("https://cronitor.link/p/KEY/nightly-job"),
            Ok(PingUrl::Cronitor {
                base: "https://cronitor.link".into(),
                key: "KEY".into(),
                monitor: "nightly-job".into()
            })
        );
        assert_eq!(
            PingUrl::parse("https://pub@o1.ingest.sentry.io/42"),
            Ok(PingUrl::Sentry {
                dsn: "https://pub@o1.ingest.sentry.io/42".into(),
                monitor: None
            })
        );
        assert_eq!(
            PingUrl::parse("https://o1.ingest.sentry.io/api/42/cron/my-slug/PUB/"),
            Ok(PingUrl::Sentry {
                dsn: "https://PUB@o1.ingest.sentry.io/42".into(),
                monitor: Some("my-slug".into())
            })
        );
        assert_eq!(
            PingUrl::parse("https://ping.example.com/{monitor}/{status}?run={run_id}"),
            Ok(PingUrl::Template(
                "https://ping.example.com/{monitor}/{status}?run={run_id}".into()
            ))
        );
        assert_eq!(
            PingUrl::parse("http://hc.internal/ping/abc"),
            Ok(PingUrl::Plain {
                base: "http://hc.internal/ping".into(),
                last: "abc".into()
            })
        );
    }

    #[test]
    fn refusals_explain_without_the_key() {
        let e = PingUrl::parse("hc-ping.com/s3cr3t").unwrap_err();
        assert!(
            e.contains("https://hc-ping.com/") && !e.contains("s3cr3t"),
            "{e}"
        );
        assert!(
            PingUrl::parse("ftp://x/s3cr3t")
                .unwrap_err()
                .contains("ftp://")
        );
        assert!(
            PingUrl::parse("https://x/{nope}")
                .unwrap_err()
                .contains("placeholder")
        );
        assert!(
            PingUrl::parse("https://x/a?rid=1")
                .unwrap_err()
                .contains("query")
        );
        assert!(PingUrl::parse("https://hc-ping.com/a/b/c").is_err());
        assert!(PingUrl::parse("https://x").is_err());
        assert!(
            !format!("{:?}", PingUrl::parse("https://hc-ping.com/k/s3cr3t")).contains("s3cr3t")
        );
    }
}
