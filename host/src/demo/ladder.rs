//! The ladder `iwf demo` prints as the session happens: one line per message (time since
//! the start, sender → receiver, what it is), its key headers indented below, a heading
//! per step and the verdict at the end. Colour only when stdout is a terminal and
//! `NO_COLOR` is unset (no-color.org): a file or a pipe gets plain text.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Who sends or receives in the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The CPM user's client: SIP UAC and MSRP endpoint.
    Cpm,
    /// The gateway under demonstration.
    Iwf,
    /// The e-mail user's SMTP server, where the gateway delivers.
    Mx,
    /// The e-mail user, who reads the mails and replies by SMTP.
    User,
}

impl Actor {
    fn label(self) -> &'static str {
        match self {
            Actor::Cpm => "CPM client",
            Actor::Iwf => "IWF",
            Actor::Mx => "SMTP server",
            Actor::User => "e-mail user",
        }
    }

    /// ANSI colour of the actor's name (SGR 36 cyan, 33 yellow, 35 magenta, 32 green).
    fn colour(self) -> &'static str {
        match self {
            Actor::Cpm => "36",
            Actor::Iwf => "33",
            Actor::Mx => "35",
            Actor::User => "32",
        }
    }
}

/// The widest actor label, so the arrows line up.
const LABEL: usize = 11;

pub struct Ladder {
    start: Instant,
    colour: bool,
    out: Box<dyn Write + Send>,
}

impl Ladder {
    /// The ladder on stdout, started now.
    pub fn stdout() -> Ladder {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Ladder {
            start: Instant::now(),
            colour,
            out: Box::new(std::io::stdout()),
        }
    }

    fn paint(&self, sgr: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (`iwf demo | head`) must not turn a played session into a panic.
        let _ = writeln!(self.out, "{text}").and_then(|()| self.out.flush());
    }

    /// A free line before the steps (the gateway's addresses, the policy).
    pub fn intro(&mut self, text: &str) {
        self.line(text);
    }

    /// The heading of step `n`.
    pub fn step(&mut self, n: usize, name: &str) {
        let heading = self.paint("1", &format!("step {n}: {name}"));
        self.line(&heading);
    }

    /// A message `at` from `from` to `to`, with its key headers (empty values left out).
    pub fn message(
        &mut self,
        at: Instant,
        from: Actor,
        to: Actor,
        what: &str,
        headers: &[(&str, String)],
    ) {
        let secs = at.saturating_duration_since(self.start).as_secs_f64();
        let from_label = self.paint(from.colour(), &format!("{:>LABEL$}", from.label()));
        let to_label = self.paint(to.colour(), &format!("{:<LABEL$}", to.label()));
        self.line(&format!("  {secs:7.3}s  {from_label} → {to_label}  {what}"));
        for (name, value) in headers.iter().filter(|(_, v)| !v.is_empty()) {
            let name = self.paint("2", &format!("{name}:"));
            self.line(&format!(
                "{:width$}{name} {value}",
                "",
                width = 2 + 9 + LABEL * 2 + 5
            ));
        }
    }

    /// A remark within a step: what the policy decided, what is skipped and why.
    pub fn note(&mut self, text: &str) {
        let text = self.paint("2", &format!("  ({text})"));
        self.line(&text);
    }

    /// Every step happened.
    pub fn passed(&mut self, steps: usize) {
        let text = self.paint("1;32", &format!("demo passed: all {steps} steps happened"));
        self.line(&text);
    }

    /// Step `n` did not happen.
    pub fn failed(&mut self, n: usize, name: &str, why: &str) {
        let text = self.paint("1;31", &format!("demo failed at step {n} ({name}): {why}"));
        self.line(&text);
    }
}
