//! `iwf`: the cpm-iwf gateway and its policy tools.

use clap::{Parser, Subcommand};
use iwf::config::Config;
use iwf::policy::{Limits, PolicyEngine, harness};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "iwf", version, about = "OMA CPM e-mail interworking function")]
struct Cli {
    /// Log lines on stderr: `text` for people (colour only on a terminal), `json` (one
    /// object per line) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded defaults and the built-in `default` policy without --config).
    Run {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check and test policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Play a whole session (INVITE, invitation, accept, chat both ways, leave) through the
    /// gateway on loopback with built-in peers, printing its ladder.
    Demo(iwf::demo::Options),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Load and type-check a policy; print its world version and decisions.
    Check { file: PathBuf },
    /// Run the decisions described in a case file against a policy.
    Test { file: PathBuf, cases: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's ladder is the output; the gateway's logs only when something is wrong.
    let quiet = matches!(cli.command, Command::Demo(_));
    init_logs(cli.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Run { config } => run(config),
        Command::Policy(cmd) => policy(cmd),
        Command::Demo(options) => iwf::demo::main(options),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_filter`). Escape codes only
/// when stderr is a terminal: a log file or a journal gets plain text.
fn init_logs(format: LogFormat, default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level, the span list kept: what Vector, Fluent Bit and Loki take.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

fn run(config_path: Option<PathBuf>) -> ExitCode {
    let config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("iwf: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(iwf::gateway::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iwf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn policy(cmd: PolicyCommand) -> ExitCode {
    // The harness runs policies under the gateway's default limits, with a generous
    // deadline: a slow machine must not fail a case that production would pass. Its calls
    // are dynamic (by the case file's names), so no warm pool.
    let limits = Limits {
        timeout_ms: 1000,
        warm_instances: 0,
        ..Limits::from(&iwf::config::PolicyConfig::default())
    };
    let engine = match PolicyEngine::new(limits) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("iwf: cannot create the policy engine: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match cmd {
        PolicyCommand::Check { file } => match harness::check(&engine, &file, &mut out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iwf: {}: refused: {e}", file.display());
                ExitCode::FAILURE
            }
        },
        PolicyCommand::Test { file, cases } => {
            match harness::run_cases(&engine, &file, &cases, &mut out) {
                Ok(summary) if summary.failed == 0 && summary.passed > 0 => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("iwf: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
