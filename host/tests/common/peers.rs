//! The real peers a test needs. A test that needs one asks for it first with [`require`]:
//! when it is missing the test fails, naming the peer and how to install it. It never
//! returns early and counts as passed (`tests/run.sh` installs every peer).

use std::path::Path;
use std::process::{Command, Stdio};

/// A program some test runs as its real peer.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    /// The DNS server with MX records.
    Dnsmasq,
    /// `/usr/bin/python3` with aiosmtpd: the recipient's SMTP server (tests/smtp).
    Aiosmtpd,
    /// The e-mail user's SMTP client.
    Swaks,
    /// The CPM client (tests/sipp).
    Sipp,
    /// The MSRP relay.
    Kamailio,
}

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";
pub const PYTHON: &str = "/usr/bin/python3";
pub const KAMAILIO: &str = "/usr/sbin/kamailio";

impl Peer {
    fn present(self) -> bool {
        match self {
            Peer::Dnsmasq => Path::new(DNSMASQ).exists(),
            Peer::Kamailio => Path::new(KAMAILIO).exists(),
            Peer::Aiosmtpd => runs(PYTHON, &["-c", "import aiosmtpd"]),
            Peer::Swaks => runs("swaks", &["--version"]),
            // `sipp -v` exits non-zero; that it starts at all is what counts.
            Peer::Sipp => Command::new("sipp")
                .arg("-v")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok(),
        }
    }

    fn install(self) -> &'static str {
        match self {
            Peer::Dnsmasq => "dnsmasq (apt-get install dnsmasq-base)",
            Peer::Aiosmtpd => "aiosmtpd for /usr/bin/python3 (apt-get install python3-aiosmtpd)",
            Peer::Swaks => "swaks (apt-get install swaks)",
            Peer::Sipp => "sipp (apt-get install sip-tester)",
            Peer::Kamailio => "kamailio (apt-get install kamailio)",
        }
    }
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails the calling test unless every one of `peers` is installed.
#[track_caller]
pub fn require(peers: &[Peer]) {
    let missing: Vec<&str> = peers
        .iter()
        .filter(|peer| !peer.present())
        .map(|peer| peer.install())
        .collect();
    assert!(
        missing.is_empty(),
        "this test needs real peers that are not installed: {}; `tests/run.sh` installs them all",
        missing.join(", ")
    );
}

/// The mail peers: dnsmasq and aiosmtpd.
pub const MAIL: &[Peer] = &[Peer::Dnsmasq, Peer::Aiosmtpd];
