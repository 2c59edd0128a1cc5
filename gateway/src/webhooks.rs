//! Webhook delivery: when a job with a `webhook` ends, POST its status object there. A non-2xx
//! answer is retried twice, `webhook_retry_secs` apart (RunPod's rule); delivery runs beside
//! the job path and never delays it; redirects are followed only within the same host.
//!
//! A webhook cannot reach inside: a URL whose host is, or resolves to, a loopback, private,
//! link-local, shared (CGNAT), multicast, broadcast, documentation or unspecified address is
//! refused at submission ([`Targets::check`]) and again at delivery, where the client's own
//! resolver drops such addresses, so a name that resolves differently later (DNS rebinding)
//! still cannot reach them. `gateway.webhook_allow_cidrs` lets chosen ranges through.

use crate::AppState;
use ipnet::IpNet;
use protocol::job::JobView;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Which addresses webhooks may reach: public ones, and those of the allow-list.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    allow: Vec<IpNet>,
}

impl Targets {
    /// Public addresses plus the ranges of `allow` (CIDR, e.g. `10.1.0.0/16`, or one address).
    /// Errors: an entry that is neither, named.
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let allow = allow
            .iter()
            .map(|a| {
                a.parse::<IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("webhook_allow_cidrs: `{a}` is not a CIDR range or an address")
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Targets { allow })
    }

    /// Whether a webhook may reach `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        !internal(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Whether `url` is an http(s) URL whose host resolves only to addresses a webhook may
    /// reach. Errors: why not, for the client.
    pub async fn check(&self, url: &str) -> Result<(), String> {
        let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err("only http and https URLs are accepted".into());
        }
        let host = u.host_str().ok_or("the URL has no host")?;
        let port = u.port_or_known_default().unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        match addrs.iter().find(|a| !self.allows(a.ip())) {
            Some(a) => Err(format!(
                "{host} resolves to {}, an internal address webhooks may not reach",
                a.ip()
            )),
            None if addrs.is_empty() => Err(format!("{host} resolves to no address")),
            None => Ok(()),
        }
    }
}

/// Addresses that are not on the public internet.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.is_documentation()
                || o[0] == 0
                // Shared address space (CGNAT), 100.64.0.0/10.
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some_and(|v4| internal(IpAddr::V4(v4)))
        }
    }
}

/// The delivery client's resolver: the system's answers without the addresses a webhook may
/// not reach.
struct Filtered(Targets);

impl reqwest::dns::Resolve for Filtered {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| targets.allows(a.ip()))
                .collect();
            if addrs.is_empty() {
                let why = format!(
                    "{} resolves to no address webhooks may reach",
                    name.as_str()
                );
                return Err(why.into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn client(targets: &Targets) -> reqwest::Client {
    let same_host = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt
            .previous()
            .first()
            .and_then(|u| u.host_str().map(str::to_string));
        if attempt.previous().len() > 5 || attempt.url().host_str().map(str::to_string) != first {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(same_host)
        .dns_resolver(Arc::new(Filtered(targets.clone())))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn deliver(
    http: reqwest::Client,
    targets: Targets,
    url: String,
    view: JobView,
    retry_after: Duration,
) {
    // An address literal never reaches the resolver: checked here, at delivery time.
    if let Err(why) = targets.check(&url).await {
        tracing::warn!(job = %view.id, %url, "webhook not delivered: {why}");
        crate::metrics::webhook(false);
        return;
    }
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(retry_after).await;
        }
        match http.post(&url).json(&view).send().await {
            Ok(r) if r.status().is_success() => return crate::metrics::webhook(true),
            Ok(r) => {
                tracing::warn!(job = %view.id, %url, status = %r.status(), attempt, "webhook refused")
            }
            Err(e) => tracing::warn!(job = %view.id, %url, attempt, "webhook failed: {e}"),
        }
    }
    tracing::warn!(job = %view.id, %url, "webhook given up after 3 attempts");
    crate::metrics::webhook(false);
}

/// Deliver due webhooks until the store goes away.
pub fn spawn(gw: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let targets = gw.webhook_targets.clone();
        let http = client(&targets);
        let retry_after = Duration::from_secs(gw.settings.webhook_retry_secs);
        loop {
            match gw.store.due_webhooks(Duration::from_secs(30)).await {
                Ok(due) => {
                    for (url, view) in due {
                        let t = targets.clone();
                        tokio::spawn(deliver(http.clone(), t, url, view, retry_after));
                    }
                }
                Err(e) => {
                    tracing::warn!("webhooks: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_targets_are_refused_unless_allowed() {
        let t = Targets::new(&[]).unwrap();
        for url in [
            "http://127.0.0.1:6379/",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://localhost/",
            "ftp://8.8.8.8/",
        ] {
            assert!(t.check(url).await.is_err(), "{url}");
        }
        assert!(t.check("http://8.8.8.8/hook").await.is_ok());
        let open = Targets::new(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(open.check("http://127.0.0.1:9/").await.is_ok());
        assert!(open.check("http://[::1]:9/").await.is_ok());
        assert!(open.check("http://10.0.0.1/").await.is_err());
        assert!(Targets::new(&["nope".into()]).is_err());
    }
}
