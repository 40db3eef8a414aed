//! The chat harness of the end-to-end tests (F3, F4, F5): the `iwf` binary with the
//! recipient server as smart host and every listener on a port it chose (port 0), sipp
//! running a chat scenario in the background, and helpers to read what reached the SMTP
//! server.

use super::mail::{Server, wait_for};
use iwf::sdp::MsrpUri;
use mail_parser::{Message, MessageParser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gateway under test; killed when dropped.
pub struct Gateway {
    process: super::Running,
    pub sip: SocketAddr,
    pub msrp: SocketAddr,
    /// The inbound SMTP listener (replies from the e-mail user).
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// `kill -9`, then `iwf run` again on the same config and store. Only for a gateway
    /// on fixed ports ([`durable_gateway`]): the peers' dialogs and paths name them.
    pub fn kill_and_restart(&mut self) {
        self.signal("KILL");
        self.process.wait();
        self.start_again();
    }

    /// Sends the gateway `signal` (`TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        signal_process(self.process.id(), signal);
    }

    /// The process id, to signal from elsewhere ([`signal_process`]).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Waits up to `within` for the process to exit; its status.
    pub fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.process.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `iwf run` again on the same config and store, once the process has exited.
    pub fn start_again(&mut self) {
        let (process, at) = super::run_gateway(&self.dir.path().join("iwf.toml"));
        assert_eq!((at.sip, at.msrp, at.smtp), (self.sip, self.msrp, self.smtp));
        self.process = process;
        self.admin = at.admin;
    }

    /// Waits up to `within` until the outbound spool is empty (every chat message taken
    /// is mailed or failed); blocking, so from async code inside `block_in_place`.
    pub fn wait_spool_empty(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.metric("iwf_spool_depth{spool=\"outbound\"}") != 0 {
            assert!(
                Instant::now() < deadline,
                "the spool did not empty within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `within` until `GET /metrics` has `series` at `value`; blocking, so from
    /// async code inside `block_in_place`.
    pub fn wait_metric(&self, series: &str, value: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.metric(series) != value {
            assert!(
                Instant::now() < deadline,
                "{series} not {value} within {within:?}: {}",
                self.metric(series)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of the `GET /metrics` line that starts with `series` (0 if absent).
    pub fn metric(&self, series: &str) -> u64 {
        let (status, body) = super::http(self.admin, "GET", "/metrics").unwrap();
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// `kill -<signal> <pid>`.
pub fn signal_process(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// The gateway with `policy` ("auto-accept": F1; "default": F2), mailing through `srv`,
/// with `[msrp]` limits small enough to test.
pub fn gateway(policy: &str, srv: &Server) -> Gateway {
    gateway_with(policy, srv, "")
}

/// As [`gateway`], with more `[msrp]` keys (`key = value\n` lines).
pub fn gateway_with(policy: &str, srv: &Server, msrp_keys: &str) -> Gateway {
    let keys = Keys {
        msrp: msrp_keys,
        ..Keys::default()
    };
    start_gateway(policy, srv, keys, [0; 3])
}

/// More keys for the gateway's config, `key = value\n` lines by section.
#[derive(Default, Clone, Copy)]
pub struct Keys<'a> {
    pub msrp: &'a str,
    pub outbound: &'a str,
    pub store: &'a str,
}

/// As [`gateway`], with more keys.
pub fn gateway_keyed(policy: &str, srv: &Server, keys: Keys) -> Gateway {
    start_gateway(policy, srv, keys, [0; 3])
}

/// As [`gateway`], with SIP, MSRP and inbound SMTP on ports chosen once: it can be killed
/// and restarted with its store ([`Gateway::kill_and_restart`]).
pub fn durable_gateway(policy: &str, srv: &Server) -> Gateway {
    durable_gateway_keyed(policy, srv, Keys::default())
}

/// As [`durable_gateway`], with more keys.
pub fn durable_gateway_keyed(policy: &str, srv: &Server, keys: Keys) -> Gateway {
    let ports = [super::free_port(), super::free_port(), super::free_port()];
    start_gateway(policy, srv, keys, ports)
}

fn start_gateway(policy: &str, srv: &Server, keys: Keys, [sip, msrp, smtp]: [u16; 3]) -> Gateway {
    let (msrp_keys, outbound_keys, store_keys) = (keys.msrp, keys.outbound, keys.store);
    let dir = tempfile::tempdir().unwrap();
    let policy_keys = match policy {
        "default" => String::new(),
        name => format!("path = \"{}\"\n", super::policy_file(name).display()),
    };
    let config = dir.path().join("iwf.toml");
    std::fs::write(
        &config,
        format!(
            "[sip]\nlisten = \"127.0.0.1:{sip}\"\ndomain = \"iwf.test\"\n\
             [msrp]\nlisten = \"127.0.0.1:{msrp}\"\nmax_message_size = 4096\nconnect_timeout_ms = 5000\n{msrp_keys}\
             [smtp.inbound]\nlisten = \"127.0.0.1:{smtp}\"\ndomain = \"mail.iwf.test\"\n\
             [smtp.outbound]\nsmart_host = \"127.0.0.1:{}\"\nhelo = \"iwf.test\"\n\
             connect_timeout_ms = 2000\ncommand_timeout_ms = 5000\ndata_timeout_ms = 5000\n{outbound_keys}\
             [policy]\n{policy_keys}\
             [admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"state\"\n{store_keys}",
            srv.port
        ),
    )
    .unwrap();
    let (process, at) = super::run_gateway(&config);
    Gateway {
        process,
        sip: at.sip,
        msrp: at.msrp,
        smtp: at.smtp,
        admin: at.admin,
        dir,
    }
}

/// sipp running a chat scenario (tests/sipp/f4-chat.xml, f3-iwf-ends.xml) once in the
/// background.
pub struct Sipp {
    child: Child,
    answer_file: PathBuf,
}

impl Sipp {
    /// Starts the call: the offer's setup is `setup`, its path the client's URI on
    /// `msrp_port` with session-id `client_session`.
    pub fn start(
        gw: &Gateway,
        scenario: &str,
        setup: &str,
        msrp_port: u16,
        client_session: &str,
        rcpt: &str,
    ) -> Sipp {
        Sipp::start_private(gw, scenario, setup, msrp_port, client_session, rcpt, "none")
    }

    /// As [`Sipp::start`], with the INVITE's `Privacy` (RFC 3323: `none`, `id`).
    pub fn start_private(
        gw: &Gateway,
        scenario: &str,
        setup: &str,
        msrp_port: u16,
        client_session: &str,
        rcpt: &str,
        privacy: &str,
    ) -> Sipp {
        let port = msrp_port.to_string();
        let keys = [
            ("setup", setup),
            ("msrp_port", port.as_str()),
            ("client_session", client_session),
            ("rcpt", rcpt),
            ("privacy", privacy),
        ];
        Sipp::run(gw, scenario, client_session, &keys)
    }

    /// Runs `tests/sipp/<scenario>` once with `-key` values `keys`; the SDP answer goes to
    /// the file `answer-<name>` (the scenario's `[answer_file]`).
    pub fn run(gw: &Gateway, scenario: &str, name: &str, keys: &[(&str, &str)]) -> Sipp {
        Sipp::run_within(gw, scenario, name, keys, "30s")
    }

    /// As [`Sipp::run`], the whole call given up after `timeout` (sipp's `-timeout`).
    pub fn run_within(
        gw: &Gateway,
        scenario: &str,
        name: &str,
        keys: &[(&str, &str)],
        timeout: &str,
    ) -> Sipp {
        let answer_file = gw.dir.path().join(format!("answer-{name}"));
        let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/sipp")
            .join(scenario);
        let mut command = Command::new("sipp");
        command.arg("-sf").arg(scenario);
        for (key, value) in keys {
            command.args(["-key", key, value]);
        }
        let child = command
            .arg("-key")
            .arg("answer_file")
            .arg(&answer_file)
            .args(["-m", "1", "-t", "u1", "-i", "127.0.0.1", "-p", "0"])
            .args([
                "-timeout",
                timeout,
                "-timeout_error",
                "-nostdin",
                "-trace_err",
            ])
            .arg(gw.sip.to_string())
            .current_dir(gw.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp (Debian package sip-tester) must be installed: .ci/run installs it");
        Sipp { child, answer_file }
    }

    /// The IWF's a=path URI and a=setup from the 200 OK's SDP answer.
    pub fn answer(&self) -> (MsrpUri, String) {
        // Whole once the line ends (sipp's shell writes it with echo).
        let line = || std::fs::read_to_string(&self.answer_file).unwrap_or_default();
        wait_for(|| line().ends_with('\n'), "sipp writes the SDP answer");
        let line = line();
        let mut words = line.split_whitespace();
        let path = words.next().unwrap().strip_prefix("a=path:").unwrap();
        let setup = words.next().unwrap().strip_prefix("a=setup:").unwrap();
        (MsrpUri::parse(path).unwrap(), setup.to_owned())
    }

    /// Waits for the scenario's end (its BYE answered) and says whether it passed.
    pub fn passed(mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "sipp did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The IWF's re-INVITE (f3-reinvited.xml, f3-reinvite-refused.xml), once its ACK
    /// came: the offer's a=path URI, a=setup and o= line.
    pub fn reinvite(&self) -> (MsrpUri, String, String) {
        let file = self.answer_file.with_extension("reinvite");
        let line = || std::fs::read_to_string(&file).unwrap_or_default();
        wait_for(|| line().ends_with('\n'), "the IWF's re-INVITE and its ACK");
        let line = line();
        let (path, rest) = line.trim().split_once(' ').unwrap();
        let (setup, origin) = rest.split_once(' ').unwrap();
        let path = path.strip_prefix("a=path:").unwrap();
        let setup = setup.strip_prefix("a=setup:").unwrap();
        (
            MsrpUri::parse(path).unwrap(),
            setup.to_owned(),
            origin.to_owned(),
        )
    }

    /// The Reason of the BYE the IWF sent (f3-iwf-ends.xml), once it came.
    pub fn bye_reason(&self) -> String {
        let file = self.answer_file.with_extension("bye");
        let line = || std::fs::read_to_string(&file).unwrap_or_default();
        wait_for(|| line().ends_with('\n'), "the IWF's BYE");
        line().trim().to_owned()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client URI the scenario's offer names (port `msrp_port`, id `session`).
pub fn client_uri(msrp_port: u16, session: &str) -> MsrpUri {
    MsrpUri::parse(&format!("msrp://127.0.0.1:{msrp_port}/{session};tcp")).unwrap()
}

pub fn mails(srv: &Server, n: usize) -> Vec<(serde_json::Value, Vec<u8>)> {
    wait_for(|| srv.mails().len() >= n, "the mails reach the server");
    srv.mails()
}

/// The first text part of each mail of `all` (from [`mails`]).
pub fn bodies(all: &[(serde_json::Value, Vec<u8>)]) -> Vec<String> {
    all.iter()
        .map(|(_, eml)| parse(eml).body_text(0).unwrap().into_owned())
        .collect()
}

pub fn parse(eml: &[u8]) -> Message<'_> {
    MessageParser::default().parse(eml).expect("a valid e-mail")
}

pub fn address(msg: &Message, header: &str) -> (Option<String>, String) {
    let a = msg.header(header).and_then(|h| h.as_address()).unwrap();
    let a = a.first().unwrap();
    (a.name().map(str::to_owned), a.address().unwrap().to_owned())
}
