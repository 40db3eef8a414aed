//! The e-mail user of the end-to-end tests: replies to the IWF's mails sent with swaks
//! to its inbound listener, and the CPM side's MSRP sends they answer.

use super::chat::{Gateway, address, parse};
use super::msrp::MsrpClient;
use iwf::msrp::FailureReport;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// swaks sends `data` (a whole message, LF line ends) from `from` to `to` at the IWF's
/// inbound listener; the reply to the end of DATA (or the refusal before it).
pub fn swaks(smtp: SocketAddr, from: &str, to: &str, data: &str) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let output = Command::new("swaks")
        // Getopt::Long takes a leading `+` as an option prefix unless POSIXLY_CORRECT.
        .env("POSIXLY_CORRECT", "1")
        .args([
            "--server",
            &smtp.ip().to_string(),
            "--port",
            &smtp.port().to_string(),
        ])
        .args(["--timeout", "20", "--helo", "mail.example.net"])
        // "" is the null reverse-path `<>`.
        .args(["--from", if from == "<>" { "" } else { from }, "--to", to])
        .arg("--data")
        .arg(format!("@{}", file.path().display()))
        .output()
        .expect("swaks (Debian package swaks) must be installed: .ci/run installs it");
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    // The reply after the data's final dot, else the first refusal.
    let lines: Vec<&str> = transcript.lines().collect();
    let after_dot = lines
        .iter()
        .position(|l| l.trim_start().starts_with("-> ."))
        .and_then(|i| lines[i + 1..].iter().find(|l| l.starts_with("<")));
    let refusal = lines.iter().find(|l| l.starts_with("<**"));
    after_dot
        .or(refusal)
        .unwrap_or_else(|| panic!("no reply in the swaks transcript:\n{transcript}"))
        .trim_start_matches(['<', '*', '-', ' '])
        .to_owned()
}

/// A reply from bob to the invitation `invitation` (its raw bytes), with `body`.
pub fn reply(invitation: &[u8], from: &str, extra_headers: &str, body: &str) -> String {
    let msg = parse(invitation);
    let id = msg.message_id().unwrap();
    let subject = msg.subject().unwrap_or("");
    format!(
        "From: Bob <{from}>\nTo: {to}\nSubject: Re: {subject}\nDate: Thu, 26 Nov 2026 11:45:00 +0100\n\
         Message-ID: <r{n}@example.net>\nIn-Reply-To: <{id}>\nReferences: <{id}>\n{extra_headers}\
         MIME-Version: 1.0\n{body}",
        to = address(&msg, "From").1,
        n = std::process::id() ^ body.len() as u32,
    )
}

/// The e-mail user `user` answers the invitation with `text` (to its From address, as a
/// mail client replies), and the gateway takes it (250); the address answered.
pub fn answer(gw: &Gateway, invitation: &[u8], user: &str, text: &str) -> String {
    let to = address(&parse(invitation), "From").1;
    let mail = reply(invitation, user, "", &plain(text));
    let said = tokio::task::block_in_place(|| swaks(gw.smtp, user, &to, &mail));
    assert!(said.starts_with("250"), "{said}");
    to
}

/// Sends a whole message in one chunk, Failure-Report yes; the response code to it.
pub async fn send(client: &mut MsrpClient, id: &str, content_type: &str, body: &[u8]) -> u16 {
    let reports = (false, FailureReport::Yes);
    let chunks = client
        .send_message(id, content_type, body, 2048, reports)
        .await;
    client.expect_response(&chunks[0], WAIT).await
}

pub fn plain(text: &str) -> String {
    format!("Content-Type: text/plain; charset=utf-8\n\n{text}\n")
}
