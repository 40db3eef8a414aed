//! Where a mail for a domain goes (RFC 5321 5.1): the MX hosts in preference order with
//! their addresses, the domain itself when it has no MX (implicit MX), nothing for a null
//! MX (RFC 7505), or the configured smart host instead of all of that.
//!
//! Owns the DNS resolver (hickory, on tokio) and its bounds (timeout, attempts). Failures
//! come back as `dns`-stage `SmtpFailure`s: permanent when the domain cannot take mail
//! (NXDOMAIN, no MX and no address, null MX), temporary otherwise (SERVFAIL, timeout).

use super::failure::{SmtpFailure, Stage};
use crate::config::SmtpOutboundConfig;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One host to try, with its addresses in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The MX exchange, the domain (implicit MX) or the smart host, for logs and errors.
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot use the system's DNS configuration ({0}); set [smtp.outbound] dns_servers")]
    SystemConfig(String),
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// Finds the targets for a recipient domain.
pub struct Router {
    resolver: TokioResolver,
    mx_port: u16,
    smart_host: Option<(String, u16)>,
}

impl Router {
    /// A router for `[smtp.outbound]`: the `dns_servers` (UDP and TCP) or the system's,
    /// `mx_port` on MX hosts, `smart_host` instead of MX when set.
    pub fn new(config: &SmtpOutboundConfig) -> Result<Self, RouterError> {
        let mut opts = ResolverOpts::default();
        let bound = |opts: &mut ResolverOpts| {
            opts.timeout = Duration::from_millis(config.dns_timeout_ms);
            opts.attempts = config.dns_attempts as usize;
        };
        let resolver = if config.dns_servers.is_empty() {
            let mut builder = TokioResolver::builder_tokio()
                .map_err(|e| RouterError::SystemConfig(e.to_string()))?;
            bound(builder.options_mut());
            builder.build()
        } else {
            bound(&mut opts);
            let servers = config
                .dns_servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .with_options(opts)
            .build()
        }
        .map_err(|e| RouterError::Build(e.to_string()))?;
        let smart_host = config.smart_host.as_ref().map(|h| {
            let (host, port) = h.rsplit_once(':').expect("checked by Config::check");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (
                host.to_owned(),
                port.parse().expect("checked by Config::check"),
            )
        });
        Ok(Self {
            resolver,
            mx_port: config.mx_port,
            smart_host,
        })
    }

    /// Where mail to `domain` goes, as connection limits count it: the smart host when one
    /// is set, else the domain (case-insensitive, RFC 5321 2.4).
    pub fn destination(&self, domain: &str) -> String {
        match &self.smart_host {
            Some((host, port)) => format!("{host}:{port}"),
            None => domain.to_ascii_lowercase(),
        }
    }

    /// The targets for mail to `domain` (the part after `@`), to be tried in order.
    pub async fn route(&self, domain: &str) -> Result<Vec<Target>, SmtpFailure> {
        if let Some((host, port)) = &self.smart_host {
            let addrs = self
                .addresses(host, *port)
                .await
                .map_err(|e| e.failure(host))?;
            return Ok(vec![Target {
                host: host.clone(),
                addrs,
            }]);
        }
        // RFC 5321 5.1: an address literal is used as is, without MX.
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip: IpAddr = literal
                .trim_start_matches("IPv6:")
                .parse()
                .map_err(|_| dns_failure(true, "5.1.2", format!("bad address literal {domain}")))?;
            return Ok(vec![Target {
                host: domain.into(),
                addrs: vec![SocketAddr::new(ip, self.mx_port)],
            }]);
        }
        let name = fqdn(domain)?;
        let exchanges = match self.resolver.mx_lookup(name.clone()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect(),
            Err(e) => match Lookup::from(&e) {
                // RFC 5321 5.1: no MX: the domain itself is the implicit MX.
                Lookup::NoData => Vec::new(),
                other => return Err(other.failure(&format!("MX of {domain}"))),
            },
        };
        if exchanges.is_empty() {
            let addrs = self
                .addresses(domain, self.mx_port)
                .await
                .map_err(|e| e.failure(&format!("{domain} (no MX, implicit MX)")))?;
            return Ok(vec![Target {
                host: domain.into(),
                addrs,
            }]);
        }
        let ordered = order_exchanges(exchanges, random_u64).map_err(|NullMx| {
            dns_failure(
                true,
                "5.1.10",
                format!("{domain} does not accept mail (null MX, RFC 7505)"),
            )
        })?;
        let mut targets = Vec::new();
        let mut failures = Vec::new();
        for host in ordered {
            match self.addresses(&host, self.mx_port).await {
                Ok(addrs) => targets.push(Target { host, addrs }),
                Err(e) => failures.push((e.clone(), e.failure(&host))),
            }
        }
        if targets.is_empty() {
            // RFC 5321 5.1: every MX host failed to resolve.
            let permanent = failures.iter().all(|(e, _)| e.is_permanent());
            let text = failures
                .iter()
                .map(|(_, f)| f.text.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let code = if permanent { "5.1.2" } else { "4.4.3" };
            return Err(dns_failure(
                permanent,
                code,
                format!("no MX host of {domain} has an address: {text}"),
            ));
        }
        Ok(targets)
    }

    /// A and AAAA of `host` (or `host` itself when it is an IP address) with `port`.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Lookup> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = fqdn(host).map_err(|f| Lookup::Temporary(f.text))?;
        let ips = self
            .resolver
            .lookup_ip(name)
            .await
            .map_err(|e| Lookup::from(&e))?;
        let addrs: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(Lookup::NoData);
        }
        Ok(addrs)
    }
}

/// `domain` as an absolute name, so no search list applies.
fn fqdn(domain: &str) -> Result<Name, SmtpFailure> {
    let mut name = Name::from_utf8(domain)
        .map_err(|e| dns_failure(true, "5.1.2", format!("bad domain {domain:?}: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

/// How a look-up went wrong, as far as mail routing cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// The name exists, without records of the type asked.
    NoData,
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// SERVFAIL, REFUSED, timeout, network: it may pass.
    Temporary(String),
}

impl From<&NetError> for Lookup {
    fn from(e: &NetError) -> Self {
        match e {
            NetError::Dns(DnsError::NoRecordsFound(no))
                if no.response_code == ResponseCode::NXDomain =>
            {
                Self::NxDomain
            }
            NetError::Dns(DnsError::NoRecordsFound(_)) => Self::NoData,
            NetError::Timeout => Self::Temporary("DNS query timed out".into()),
            other => Self::Temporary(other.to_string()),
        }
    }
}

impl Lookup {
    fn is_permanent(&self) -> bool {
        !matches!(self, Self::Temporary(_))
    }

    /// RFC 3463: X.1.2 bad destination system address; 4.4.3 directory server failure.
    fn failure(&self, what: &str) -> SmtpFailure {
        match self {
            Self::NoData => dns_failure(true, "5.1.2", format!("{what}: no address (A/AAAA)")),
            Self::NxDomain => {
                dns_failure(true, "5.1.2", format!("{what}: no such domain (NXDOMAIN)"))
            }
            Self::Temporary(text) => dns_failure(false, "4.4.3", format!("{what}: {text}")),
        }
    }
}

fn dns_failure(permanent: bool, enhanced: &str, text: String) -> SmtpFailure {
    SmtpFailure::local(Stage::Dns, Some(enhanced), text, permanent)
}

/// A null MX (RFC 7505 3): the domain says it takes no mail.
#[derive(Debug, PartialEq, Eq)]
struct NullMx;

/// RFC 5321 5.1: exchanges by preference, lowest first, hosts of equal preference in
/// random order (`random` supplies it); an exchange of `.` alone is a null MX (RFC 7505),
/// and `.` beside real exchanges is left out. Names are returned without the final dot.
fn order_exchanges(
    mut exchanges: Vec<(u16, String)>,
    mut random: impl FnMut() -> u64,
) -> Result<Vec<String>, NullMx> {
    let before = exchanges.len();
    exchanges.retain(|(_, host)| host != "." && !host.is_empty());
    if exchanges.is_empty() && before > 0 {
        return Err(NullMx);
    }
    exchanges.sort_by_key(|(preference, _)| *preference);
    let mut start = 0;
    while start < exchanges.len() {
        let end = start
            + exchanges[start..]
                .iter()
                .take_while(|(p, _)| *p == exchanges[start].0)
                .count();
        // Fisher-Yates within one preference.
        for i in (start + 1..end).rev() {
            let j = start + (random() % (i - start + 1) as u64) as usize;
            exchanges.swap(i, j);
        }
        start = end;
    }
    Ok(exchanges
        .into_iter()
        .map(|(_, host)| host.trim_end_matches('.').to_owned())
        .collect())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Without OS randomness, equal-preference hosts keep their order: still correct.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(list: &[(u16, &str)]) -> Vec<(u16, String)> {
        list.iter().map(|(p, h)| (*p, h.to_string())).collect()
    }

    #[test]
    fn exchanges_in_preference_order_without_final_dot() {
        let ordered = order_exchanges(
            mx(&[(20, "b.example."), (10, "a.example."), (30, "c.example.")]),
            || 0,
        );
        assert_eq!(ordered.unwrap(), ["a.example", "b.example", "c.example"]);
    }

    #[test]
    fn equal_preference_is_shuffled_but_stays_in_its_rank() {
        let list = mx(&[(10, "a1."), (10, "a2."), (10, "a3."), (20, "b.")]);
        let mut seen = std::collections::HashSet::new();
        let mut n = 0u64;
        for _ in 0..50 {
            let ordered = order_exchanges(list.clone(), || {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                n >> 33
            })
            .unwrap();
            assert_eq!(ordered[3], "b");
            seen.insert(ordered[0].clone());
        }
        assert_eq!(seen.len(), 3, "every a-host comes first sometimes");
    }

    #[test]
    fn null_mx_alone_is_refusal_and_ignored_beside_others() {
        assert_eq!(order_exchanges(mx(&[(0, ".")]), || 0), Err(NullMx));
        assert_eq!(
            order_exchanges(mx(&[(0, "."), (10, "mx.example.")]), || 0).unwrap(),
            ["mx.example"]
        );
        assert_eq!(
            order_exchanges(Vec::new(), || 0).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn lookup_failures_are_typed() {
        assert!(Lookup::NxDomain.failure("x").permanent);
        assert!(Lookup::NoData.failure("x").permanent);
        let t = Lookup::Temporary("SERVFAIL".into()).failure("MX of x");
        assert!(!t.permanent && t.stage == Stage::Dns && t.code == 0);
        assert_eq!(t.enhanced_code.as_deref(), Some("4.4.3"));
        assert_eq!(
            Lookup::from(&NetError::Timeout),
            Lookup::Temporary("DNS query timed out".into())
        );
    }
}
