//! Where a worker serves `/healthz`, `/readyz` and `/metrics`.
//!
//! `--listen` / `OFFPEAK_WORKER_LISTEN` is one of two things:
//!
//! - `HOST:PORT`, one address, taken exactly: if another process holds it the
//!   worker exits with an error naming it (non-zero status). Never a quiet
//!   move elsewhere: whoever wrote the address has a probe, a Prometheus
//!   target or a firewall rule pointing at it. Port 0 lets the kernel pick.
//! - `HOST:FIRST-LAST`, a range: the worker takes the first free port of it
//!   and logs (INFO) the address it took.
//!
//! The default is the range [`DEFAULT`], `127.0.0.1:9091-9190`: the first
//! worker on a host gets 9091 as before, the next 9092, and so on, so "start
//! as many workers as you like" (README) holds on one machine. With a fixed
//! default the second worker exited at once with "Address already in use"
//! (issue #16), and a two-worker setup quietly ran one.
//!
//! Why a range in the one setting, rather than "fall back when the default
//! port is taken": the behaviour is then written down where the operator
//! looks (`--help`, the configuration table, the value itself), an operator
//! who runs several workers per host can give them a range of their own
//! (`10.0.0.5:9300-9309`), and the same code path serves the default and an
//! explicit range, so a test of a range tests the default's logic.
//! Why not port 0 by default: Prometheus and a person with `curl` need a
//! small, predictable set of ports to look at (`9091`, `9092`, ...), not one
//! from the ephemeral range. Containers set `0.0.0.0:9091` exactly (the image
//! does): each pod has its own IP, and the probes and the
//! `prometheus.io/port` annotation name 9091.
//!
//! The address actually taken is in the startup log line and in the JSON of
//! `/healthz` and `/readyz` (`"listen"`), so a worker on a fallback port is
//! easy to find.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::str::FromStr;

use tokio::net::TcpListener;

/// The default of `--listen`: 9091, else the next free port up to 9190.
/// A hundred ports: more workers than one host sensibly runs. A port in it
/// that another program holds (node_exporter's 9100, say) is skipped like
/// any port in use.
pub const DEFAULT: &str = "127.0.0.1:9091-9190";

/// A parsed `--listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// One address, taken exactly.
    Exact { host: String, port: u16 },
    /// The first free port of `first..=last` on `host`.
    Range { host: String, first: u16, last: u16 },
}

/// Why a worker could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "{addr} is already in use (another worker, or another program, listens there); an address given with \
         --listen / OFFPEAK_WORKER_LISTEN is taken exactly: choose a free one, or a range such as {host}:9091-9190 \
         to take the first free port of it"
    )]
    InUse { addr: String, host: String },
    #[error(
        "every port of {range} is in use ({count} ports); stop a worker, or give --listen / OFFPEAK_WORKER_LISTEN \
         a wider range or an address of its own"
    )]
    RangeFull { range: String, count: u32 },
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: io::Error,
    },
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected HOST:PORT (e.g. 127.0.0.1:9091) or HOST:FIRST-LAST (e.g. 127.0.0.1:9091-9190)";
        let (host, ports) = s.rsplit_once(':').ok_or_else(|| format!("'{s}': no HOST: before the port; {usage}"))?;
        if host.is_empty() {
            return Err(format!("'{s}': no host; {usage}"));
        }
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("'{s}': '{p}' is not a port (0-65535); {usage}"));
        match ports.split_once('-') {
            None => Ok(Self::Exact { host: host.to_owned(), port: port(ports)? }),
            Some((first, last)) => {
                let (first, last) = (port(first)?, port(last)?);
                if first == 0 || first > last {
                    return Err(format!("'{s}': a range runs from a port of 1 or more up to one at least as high; {usage}"));
                }
                Ok(Self::Range { host: host.to_owned(), first, last })
            }
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact { host, port } => write!(f, "{host}:{port}"),
            Self::Range { host, first, last } => write!(f, "{host}:{first}-{last}"),
        }
    }
}

/// A listening socket and where it is.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    /// The address taken (with the port the kernel chose, for port 0).
    pub addr: SocketAddr,
    /// Ports of the range found in use before this one (0 for an exact address).
    pub skipped: u32,
}

impl Listen {
    /// Binds as described in the module docs.
    ///
    /// # Errors
    /// An exact address in use ([`ListenError::InUse`]); every port of a
    /// range in use ([`ListenError::RangeFull`]); anything else the system
    /// refuses (an address not on this host, a privileged port), at once
    /// and for a range without trying its other ports, which would fail
    /// the same way ([`ListenError::Io`]).
    pub async fn bind(&self) -> Result<Bound, ListenError> {
        match self {
            Self::Exact { host, port } => {
                let addr = format!("{host}:{port}");
                match TcpListener::bind(&addr).await {
                    Ok(listener) => Ok(Bound { addr: local_addr(&listener, &addr)?, listener, skipped: 0 }),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(ListenError::InUse { addr, host: host.clone() }),
                    Err(source) => Err(ListenError::Io { addr, source }),
                }
            }
            Self::Range { host, first, last } => {
                for (skipped, port) in (*first..=*last).enumerate() {
                    let addr = format!("{host}:{port}");
                    match TcpListener::bind(&addr).await {
                        Ok(listener) => {
                            // `enumerate` counts at most 65535 ports: fits a u32.
                            return Ok(Bound { addr: local_addr(&listener, &addr)?, listener, skipped: skipped as u32 });
                        }
                        Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                        Err(source) => return Err(ListenError::Io { addr, source }),
                    }
                }
                Err(ListenError::RangeFull { range: self.to_string(), count: u32::from(*last - *first) + 1 })
            }
        }
    }
}

fn local_addr(listener: &TcpListener, addr: &str) -> Result<SocketAddr, ListenError> {
    listener.local_addr().map_err(|source| ListenError::Io { addr: addr.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_range_starting_at_9091() {
        assert_eq!(DEFAULT.parse::<Listen>(), Ok(Listen::Range { host: "127.0.0.1".into(), first: 9091, last: 9190 }));
    }

    #[test]
    fn one_port_is_an_exact_address_and_ipv6_hosts_keep_their_brackets() {
        assert_eq!("0.0.0.0:9091".parse::<Listen>(), Ok(Listen::Exact { host: "0.0.0.0".into(), port: 9091 }));
        assert_eq!("[::1]:9300-9309".parse::<Listen>(), Ok(Listen::Range { host: "[::1]".into(), first: 9300, last: 9309 }));
        assert_eq!("[::1]:9300-9309".parse::<Listen>().map(|l| l.to_string()), Ok("[::1]:9300-9309".into()));
    }

    #[test]
    fn malformed_values_are_refused_with_the_expected_forms() {
        for bad in ["9091", ":9091", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:9190-9091", "127.0.0.1:0-5", "127.0.0.1:a-b"] {
            let err = bad.parse::<Listen>().expect_err(bad);
            assert!(err.contains("HOST:FIRST-LAST"), "{bad}: {err}");
        }
    }

    /// Two adjacent ports held by this test, below the ephemeral range so
    /// the kernel does not hand them to an outgoing connection meanwhile.
    fn two_adjacent_ports() -> (std::net::TcpListener, std::net::TcpListener) {
        let start = 20_000 + (std::process::id() % 5_000) as u16 * 2;
        (0..2_000u16)
            .map(|i| start + i * 2)
            .find_map(|p| {
                let a = std::net::TcpListener::bind(("127.0.0.1", p)).ok()?;
                let b = std::net::TcpListener::bind(("127.0.0.1", p + 1)).ok()?;
                Some((a, b))
            })
            .expect("two adjacent free ports")
    }

    #[tokio::test]
    async fn a_range_skips_ports_in_use_and_says_how_many() {
        let (held, free) = two_adjacent_ports();
        let first = held.local_addr().unwrap().port();
        drop(free);
        let bound = Listen::Range { host: "127.0.0.1".into(), first, last: first + 1 }.bind().await.expect("second port free");
        assert_eq!((bound.addr.port(), bound.skipped), (first + 1, 1));
    }

    #[tokio::test]
    async fn a_range_with_every_port_in_use_is_an_error_naming_it() {
        let (a, _b) = two_adjacent_ports();
        let first = a.local_addr().unwrap().port();
        let err = Listen::Range { host: "127.0.0.1".into(), first, last: first + 1 }.bind().await.expect_err("all taken");
        assert!(matches!(err, ListenError::RangeFull { count: 2, .. }), "{err}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{first}-{}", first + 1)), "{err}");
    }

    #[tokio::test]
    async fn an_exact_address_in_use_is_an_error_not_a_move() {
        let (a, _b) = two_adjacent_ports();
        let port = a.local_addr().unwrap().port();
        let err = Listen::Exact { host: "127.0.0.1".into(), port }.bind().await.expect_err("taken");
        assert!(matches!(err, ListenError::InUse { .. }), "{err}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port} is already in use")), "{err}");
    }
}
