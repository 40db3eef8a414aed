//! `iwf policy check FILE.wasm` and `iwf policy test FILE.wasm CASES.toml`.
//!
//! `check` loads a policy as the gateway would and says what it is. `test` runs the
//! decisions of a policy against a case file and compares the answers. Both are generic:
//! functions are found and called through wasmtime's dynamic component API
//! ([`super::value`] reads arguments and expectations by the function's types), so a
//! decision added to the world needs no change here.
//!
//! Every case runs in a fresh store and instance under the gateway's sandbox (deadline,
//! memory cap), as a production decision does. A call that traps, times out or runs out
//! of memory fails its case: the harness tests the policy, never the host's fail-safes.
//!
//! # Case files
//!
//! ```toml
//! # Named argument values, reusable by every case.
//! [fixtures.alice-invites-bob]
//! session-id = "s1"
//! gateway = { sip-domain = "iwf.example.com", mail-domain = "mail.example.com" }
//! request-uri = "mailto:bob@example.net"
//! from = { uri = "sip:+15551234567@ims.example.com", display-name = "Alice" }
//! privacy-id = false
//!
//! [[case]]
//! name = "asks the e-mail user"
//! call = "on-invite"                         # a function of cpm:iwf-policy/decisions
//! args = { session = "@alice-invites-bob" }  # "@name" names a fixture
//! expect = "ask-user"                        # the answer (records: listed fields only)
//!
//! [[case]]
//! name = "invitation hides the inviter under Privacy: id"
//! call = "invitation-body"
//! # A fixture with some fields replaced (nested records merge field by field).
//! args = { session = { base = "@alice-invites-bob", privacy-id = true } }
//! contains = ["ACCEPT", "REJECT"]            # must occur in the answer
//! not-contains = ["Alice"]                   # must not occur in the answer
//! ```
//!
//! Values are written as [`super::value`] describes: records as tables with the WIT field
//! names, `option` fields left out (or `"none"`) for none, variant and enum cases by name
//! (`{ case = payload }` with a payload). A case needs `expect`, `contains` or
//! `not-contains`. `contains` looks in the answer's strings as they are and in its
//! rendering (`"at-most-every"` finds a variant case).
//!
//! The report says `ok   <name>` or `FAIL <name>` with what was expected and what came,
//! and ends with `N passed, N failed`. A case the harness cannot run (unknown function,
//! argument of the wrong type, typo in a key) fails with the reason; it never stops the
//! run.

use super::engine::PolicyEngine;
use super::loaded::{LoadError, Policy};
use super::sandbox;
use super::value::{self, Mode, Reader};
use super::world::{DECISIONS_INTERFACE, WORLD_VERSION};
use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Type, Val};

/// How a run of a case file went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Loads `path` as the gateway would, and prints the policy's name and version, the
/// world, the sha256 and the decisions it exports with their WIT signatures. A file the
/// gateway would refuse is refused with the same [`LoadError`].
pub fn check(
    engine: &Arc<PolicyEngine>,
    path: &Path,
    out: &mut dyn Write,
) -> Result<(), LoadError> {
    let policy = engine.load_file(path)?;
    let exports = Exports::of(engine, &policy);
    let info = policy.info();
    // The report is best effort: a closed stdout is no reason to call the policy bad.
    let _ = (|| -> std::io::Result<()> {
        writeln!(out, "file:      {}", path.display())?;
        writeln!(out, "policy:    {} {}", info.name, info.version)?;
        writeln!(
            out,
            "world:     cpm:iwf-policy/policy@{WORLD_VERSION} (exports {DECISIONS_INTERFACE})"
        )?;
        writeln!(out, "sha256:    {}", policy.sha256_hex())?;
        writeln!(
            out,
            "memory:    {:.1} MiB after info() (cap: [policy] memory_mb = {} MiB per memory)",
            policy.memory_at_load() as f64 / (1 << 20) as f64,
            engine.limits().memory_bytes >> 20
        )?;
        writeln!(out, "functions: {}", exports.functions.len())?;
        for (name, func) in &exports.functions {
            writeln!(out, "  {name}: {}", exports.signature(func))?;
        }
        Ok(())
    })();
    Ok(())
}

/// Runs the cases of `cases_path` against the policy `policy_path`, writing the report
/// to `out`. Fails only when the run cannot start (the policy is refused, the case file
/// is unreadable or not TOML, or `out` fails); a bad case is a failed case.
pub fn run_cases(
    engine: &Arc<PolicyEngine>,
    policy_path: &Path,
    cases_path: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<Summary> {
    let policy = engine
        .load_file(policy_path)
        .with_context(|| format!("{}: refused", policy_path.display()))?;
    let text = std::fs::read_to_string(cases_path)
        .with_context(|| format!("cannot read {}", cases_path.display()))?;
    let file = CaseFile::parse(&text).with_context(|| format!("{}", cases_path.display()))?;
    let exports = Exports::of(engine, &policy);
    writeln!(
        out,
        "testing {} {} (sha256 {}) with {}",
        policy.info().name,
        policy.info().version,
        policy.sha256_hex(),
        cases_path.display()
    )?;
    let mut summary = Summary::default();
    for (i, table) in file.cases.iter().enumerate() {
        let name = table
            .get("name")
            .and_then(toml::Value::as_str)
            .map_or_else(|| format!("case {}", i + 1), str::to_string);
        match run_case(&policy, &exports, &file.fixtures, table) {
            Ok(()) => {
                summary.passed += 1;
                writeln!(out, "ok   {name}")?;
            }
            Err(lines) => {
                summary.failed += 1;
                writeln!(out, "FAIL {name}")?;
                for line in lines {
                    writeln!(out, "  {line}")?;
                }
            }
        }
    }
    writeln!(out, "{} passed, {} failed", summary.passed, summary.failed)?;
    Ok(summary)
}

/// The functions and named types of the policy's decisions interface, from the component's
/// type (no instance needed).
struct Exports {
    functions: Vec<(String, ComponentFunc)>,
    types: Vec<(String, Type)>,
}

impl Exports {
    fn of(engine: &PolicyEngine, policy: &Policy) -> Self {
        let mut exports = Self {
            functions: Vec::new(),
            types: Vec::new(),
        };
        let component = policy.component().component_type();
        let Some(ComponentItem::ComponentInstance(instance)) = component
            .get_export(engine.engine(), DECISIONS_INTERFACE)
            .map(|e| e.ty)
        else {
            return exports; // `load_file` refuses such a policy.
        };
        for (name, item) in instance.exports(engine.engine()) {
            match item.ty {
                ComponentItem::ComponentFunc(f) => exports.functions.push((name.to_string(), f)),
                ComponentItem::Type(t) => exports.types.push((name.to_string(), t)),
                _ => {}
            }
        }
        exports
    }

    fn function(&self, name: &str) -> Option<&ComponentFunc> {
        self.functions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f)
    }

    fn names(&self) -> String {
        self.functions
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `func(session: session) -> invite-decision`.
    fn signature(&self, func: &ComponentFunc) -> String {
        let params: Vec<String> = func
            .params()
            .map(|(name, ty)| format!("{name}: {}", value::wit_type(&ty, &self.types)))
            .collect();
        let mut sig = format!("func({})", params.join(", "));
        if let Some(result) = func.results().next() {
            sig.push_str(&format!(" -> {}", value::wit_type(&result, &self.types)));
        }
        sig
    }
}

/// A parsed case file: the fixtures, and each case as written (read when it runs, so that
/// a bad case fails alone).
struct CaseFile {
    fixtures: toml::Table,
    cases: Vec<toml::Table>,
}

impl CaseFile {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut top: toml::Table = toml::from_str(text)?;
        let fixtures = match top.remove("fixtures") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => anyhow::bail!("`fixtures` must be a table: [fixtures.NAME]"),
        };
        let cases = match top.remove("case") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    toml::Value::Table(t) => Ok(t),
                    _ => anyhow::bail!("case {} is not a table: write [[case]]", i + 1),
                })
                .collect::<anyhow::Result<_>>()?,
            Some(_) => anyhow::bail!("`case` must be an array of tables: write [[case]]"),
        };
        if let Some(key) = top.keys().next() {
            anyhow::bail!(
                "unknown top-level key `{key}`: a case file has [fixtures.NAME] and [[case]]"
            );
        }
        Ok(Self { fixtures, cases })
    }
}

const CASE_KEYS: &[&str] = &["name", "call", "args", "expect", "contains", "not-contains"];

/// One case, read from its table.
struct Case<'a> {
    call: &'a str,
    args: Option<&'a toml::Table>,
    expect: Option<&'a toml::Value>,
    contains: Vec<&'a str>,
    not_contains: Vec<&'a str>,
}

impl<'a> Case<'a> {
    fn read(table: &'a toml::Table) -> Result<Self, String> {
        if let Some(key) = table.keys().find(|k| !CASE_KEYS.contains(&k.as_str())) {
            return Err(format!(
                "unknown key `{key}` (a case has {})",
                CASE_KEYS.join(", ")
            ));
        }
        if !table.get("name").is_some_and(toml::Value::is_str) {
            return Err("`name` (a string) is missing".into());
        }
        let call = table
            .get("call")
            .and_then(toml::Value::as_str)
            .ok_or("`call` (the name of a decision, e.g. \"on-invite\") is missing")?;
        let args = match table.get("args") {
            None => None,
            Some(toml::Value::Table(t)) => Some(t),
            Some(_) => return Err("`args` must be a table: { session = \"@fixture\" }".into()),
        };
        let case = Self {
            call,
            args,
            expect: table.get("expect"),
            contains: strings(table, "contains")?,
            not_contains: strings(table, "not-contains")?,
        };
        if case.expect.is_none() && case.contains.is_empty() && case.not_contains.is_empty() {
            return Err("a case needs `expect`, `contains` or `not-contains`".into());
        }
        Ok(case)
    }
}

fn strings<'a>(table: &'a toml::Table, key: &str) -> Result<Vec<&'a str>, String> {
    match table.get(key) {
        None => Ok(Vec::new()),
        Some(toml::Value::String(s)) => Ok(vec![s]),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().ok_or(format!("`{key}` must be strings")))
            .collect(),
        Some(_) => Err(format!("`{key}` must be a string or an array of strings")),
    }
}

/// Runs one case; `Err` holds the report lines of a failure.
fn run_case(
    policy: &Policy,
    exports: &Exports,
    fixtures: &toml::Table,
    table: &toml::Table,
) -> Result<(), Vec<String>> {
    let one = |line: String| vec![line];
    let case = Case::read(table).map_err(|e| one(format!("bad case: {e}")))?;
    let func_ty = exports.function(case.call).ok_or_else(|| {
        one(format!(
            "no decision `{}`; the policy exports {}",
            case.call,
            exports.names()
        ))
    })?;
    let params = arguments(func_ty, case.args, fixtures, &exports.types)
        .map_err(|e| one(format!("bad arguments: {e}")))?;
    let result_ty = func_ty.results().next();
    let expected = match (case.expect, &result_ty) {
        (None, _) => None,
        (Some(_), None) => return Err(one(format!("`{}` has no result to expect", case.call))),
        (Some(v), Some(ty)) => Some(
            Reader::new(fixtures, Mode::Expectation)
                .naming(&exports.types)
                .read(v, ty, "expect")
                .map_err(|e| one(format!("bad expectation: {e}")))?,
        ),
    };

    let actual = call(policy, case.call, &params, func_ty.results().len())
        .map_err(|e| one(format!("error:    {e}")))?
        .into_iter()
        .next()
        .unwrap_or(Val::Tuple(Vec::new()));

    let rendered = value::render(&actual);
    let texts = value::strings(&actual);
    let occurs = |s: &str| rendered.contains(s) || texts.iter().any(|t| t.contains(s));
    let mut lines = Vec::new();
    let mut differs_at = None;
    if let Some(expected) = &expected
        && let Some(path) = value::first_difference(expected, &actual)
    {
        lines.push(format!("expected: {}", value::render(expected)));
        differs_at = Some(path).filter(|p| !p.is_empty());
    }
    let missing: Vec<String> = quoted(case.contains.iter().filter(|s| !occurs(s)));
    if !missing.is_empty() {
        lines.push(format!("expected: to contain {}", missing.join(", ")));
    }
    let present: Vec<String> = quoted(case.not_contains.iter().filter(|s| occurs(s)));
    if !present.is_empty() {
        lines.push(format!("expected: not to contain {}", present.join(", ")));
    }
    if lines.is_empty() {
        return Ok(());
    }
    lines.push(format!("actual:   {rendered}"));
    if let Some(path) = differs_at {
        lines.push(format!("differs at {path}"));
    }
    Err(lines)
}

fn quoted<'s>(items: impl Iterator<Item = &'s &'s str>) -> Vec<String> {
    items.map(|s| format!("{s:?}")).collect()
}

/// The call's parameters in order, read from `args` by the function's types; an absent
/// `option` parameter is none.
fn arguments(
    func: &ComponentFunc,
    args: Option<&toml::Table>,
    fixtures: &toml::Table,
    type_names: &[(String, Type)],
) -> Result<Vec<Val>, String> {
    let empty = toml::Table::new();
    let args = args.unwrap_or(&empty);
    let params: Vec<&str> = func.params().map(|(n, _)| n).collect();
    if let Some(unknown) = args.keys().find(|k| !params.contains(&k.as_str())) {
        return Err(format!(
            "`{unknown}` is not a parameter (parameters: {})",
            if params.is_empty() {
                "none".to_string()
            } else {
                params.join(", ")
            }
        ));
    }
    let reader = Reader::new(fixtures, Mode::Argument).naming(type_names);
    func.params()
        .map(|(name, ty)| match (args.get(name), &ty) {
            (Some(v), _) => reader.read(v, &ty, name).map_err(|e| e.to_string()),
            (None, Type::Option(_)) => Ok(Val::Option(None)),
            (None, _) => Err(format!(
                "`{name}` is missing (a {})",
                value::wit_type(&ty, type_names)
            )),
        })
        .collect()
}

/// Calls `name` of the decisions interface in a fresh sandboxed instance, as the gateway
/// does; the error says why there is no answer (trap, timeout, out of memory) and what the
/// runtime said, without the Wasm backtrace (function numbers tell a reader little).
fn call(policy: &Policy, name: &str, params: &[Val], results: usize) -> Result<Vec<Val>, String> {
    let mut store = policy.new_store();
    let fail = |store: &wasmtime::Store<_>, e: &wasmtime::Error, stage: &str| {
        format!("{}{stage}: {}", sandbox::classify(store, e), e.root_cause())
    };
    let instance = policy
        .instance_pre()
        .instantiate(&mut store)
        .map_err(|e| fail(&store, &e, " (instantiating)"))?;
    let func = instance
        .get_export_index(&mut store, None, DECISIONS_INTERFACE)
        .and_then(|iface| instance.get_export_index(&mut store, Some(&iface), name))
        .and_then(|index| instance.get_func(&mut store, index))
        .ok_or_else(|| format!("`{name}` is not a function of {DECISIONS_INTERFACE}"))?;
    let mut out = vec![Val::Bool(false); results];
    func.call(&mut store, params, &mut out)
        .map_err(|e| fail(&store, &e, ""))?;
    Ok(out)
}
