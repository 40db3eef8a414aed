//! Component values in the notation of policy case files, for `iwf policy test`.
//!
//! The harness calls decisions through wasmtime's dynamic API, so that one piece of
//! generic code covers every function of the world, and a new decision needs no harness
//! change. This module turns TOML into [`Val`]s, guided by the function's component
//! [`Type`], and turns answers back into text the case file could have said:
//!
//! | WIT                | TOML                                                      |
//! |--------------------|-----------------------------------------------------------|
//! | `record`           | a table with the kebab-case field names; a missing `option` field is `none` |
//! | `variant`          | `"case"` for a case without payload, `{ case = payload }` |
//! | `enum`             | `"case"`                                                  |
//! | `option<T>`        | the value, or `"none"` (or absent as a record field); `{ some = v }` when `v` itself could read as `none` |
//! | `list`, `tuple`    | an array                                                  |
//! | `flags`            | an array of flag names                                    |
//! | `result`           | `"ok"`, `"err"`, `{ ok = v }`, `{ err = v }`              |
//! | integers           | an integer, range-checked                                 |
//! | `string`, `char`   | a string                                                  |
//!
//! Fixtures keep case files short: where the type is not a string, the string `"@name"`
//! stands for the fixture `name`, and a record may be written `{ base = "@name", ... }`:
//! the fixture with the given fields replaced (nested records are merged field by field).
//!
//! Expectations are read in [`Mode::Expectation`]: a record lists only the fields to
//! compare, and [`first_difference`] ignores the others.
//!
//! Answers are rendered ([`render`]) TOML-like and inline, but with bare case names
//! (`ask-user`, `{ chat = "hello" }`, `none`), so a report reads like the WIT.

use std::borrow::Cow;
use std::fmt::{self, Write};
use wasmtime::component::{Type, Val};

/// A value of the case file that does not fit the type, with where it sits
/// (`session.from.uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ValueError {}

/// What a TOML value is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// An argument: every record field is given (or `none`).
    Argument,
    /// An expected answer: records list only the fields to compare.
    Expectation,
}

/// Fixture references nested deeper than this are a loop.
const MAX_FIXTURE_DEPTH: usize = 32;

/// Reads TOML values as component values of a given type.
pub struct Reader<'a> {
    fixtures: &'a toml::Table,
    mode: Mode,
    /// Type names for error messages (see [`wit_type`]).
    names: &'a [(String, Type)],
}

type Result<T> = std::result::Result<T, ValueError>;

fn error(path: &str, message: impl Into<String>) -> ValueError {
    ValueError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn field_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

impl<'a> Reader<'a> {
    /// `fixtures` is the case file's `[fixtures]` table (may be empty).
    pub fn new(fixtures: &'a toml::Table, mode: Mode) -> Self {
        Self {
            fixtures,
            mode,
            names: &[],
        }
    }

    /// Names types in error messages by `names` (the interface's named types).
    pub fn naming(self, names: &'a [(String, Type)]) -> Self {
        Self { names, ..self }
    }

    fn expected(&self, ty: &Type) -> String {
        expected(ty, self.names)
    }

    fn wit(&self, ty: &Type) -> String {
        wit_type(ty, self.names)
    }

    /// `value` as a value of `ty`; `path` names it in errors (an argument name).
    pub fn read(&self, value: &toml::Value, ty: &Type, path: &str) -> Result<Val> {
        self.read_at(value, ty, path, 0)
    }

    fn fixture(&self, reference: &str, path: &str, depth: usize) -> Result<&'a toml::Value> {
        if depth > MAX_FIXTURE_DEPTH {
            return Err(error(path, "fixtures refer to each other in a loop"));
        }
        let name = &reference[1..];
        self.fixtures.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.fixtures.keys().map(String::as_str).collect();
            error(
                path,
                format!(
                    "no fixture named `{name}` (fixtures: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })
    }

    fn read_at(&self, value: &toml::Value, ty: &Type, path: &str, depth: usize) -> Result<Val> {
        use toml::Value as T;
        if let Type::Option(option) = ty {
            return self.read_option(value, &option.ty(), path, depth);
        }
        // A fixture reference, wherever a string is not itself the value.
        if let T::String(s) = value
            && s.starts_with('@')
            && !matches!(ty, Type::String | Type::Char)
        {
            let fixture = self.fixture(s, path, depth)?;
            return self.read_at(fixture, ty, path, depth + 1);
        }
        let mismatch = || {
            error(
                path,
                format!("expected {}, found {}", self.expected(ty), found(value)),
            )
        };
        Ok(match (ty, value) {
            (Type::Bool, T::Boolean(b)) => Val::Bool(*b),
            (Type::U8, T::Integer(i)) => Val::U8(int(*i, path, "u8")?),
            (Type::U16, T::Integer(i)) => Val::U16(int(*i, path, "u16")?),
            (Type::U32, T::Integer(i)) => Val::U32(int(*i, path, "u32")?),
            (Type::U64, T::Integer(i)) => Val::U64(int(*i, path, "u64")?),
            (Type::S8, T::Integer(i)) => Val::S8(int(*i, path, "s8")?),
            (Type::S16, T::Integer(i)) => Val::S16(int(*i, path, "s16")?),
            (Type::S32, T::Integer(i)) => Val::S32(int(*i, path, "s32")?),
            (Type::S64, T::Integer(i)) => Val::S64(*i),
            (Type::Float32, T::Float(f)) => Val::Float32(*f as f32),
            (Type::Float32, T::Integer(i)) => Val::Float32(*i as f32),
            (Type::Float64, T::Float(f)) => Val::Float64(*f),
            (Type::Float64, T::Integer(i)) => Val::Float64(*i as f64),
            (Type::String, T::String(s)) => Val::String(s.clone()),
            (Type::Char, T::String(s)) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Val::Char(c),
                    _ => return Err(error(path, "expected a string of one character")),
                }
            }
            (Type::Enum(e), T::String(s)) => {
                if !e.names().any(|n| n == s) {
                    return Err(error(
                        path,
                        format!("no case `{s}`; expected {}", self.expected(ty)),
                    ));
                }
                Val::Enum(s.clone())
            }
            (Type::Flags(flags), T::Array(items)) => {
                let mut set = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    match item {
                        T::String(s) if flags.names().any(|n| n == s) => set.push(s.clone()),
                        _ => {
                            return Err(error(
                                &item_path,
                                format!("expected {}", self.expected(ty)),
                            ));
                        }
                    }
                }
                Val::Flags(set)
            }
            (Type::Record(_), T::Table(table)) => self.read_record(table, ty, path, depth)?,
            (Type::Variant(_), T::String(_) | T::Table(_)) => {
                self.read_variant(value, ty, path, depth)?
            }
            (Type::Result(_), T::String(_) | T::Table(_)) => {
                self.read_result(value, ty, path, depth)?
            }
            (Type::List(list), T::Array(items)) => {
                Val::List(self.read_items(items, &list.ty(), path, depth)?)
            }
            (Type::FixedLengthList(list), T::Array(items)) => {
                if items.len() != list.len() as usize {
                    return Err(error(
                        path,
                        format!("expected {} items, found {}", list.len(), items.len()),
                    ));
                }
                Val::FixedLengthList(self.read_items(items, &list.ty(), path, depth)?)
            }
            (Type::Tuple(tuple), T::Array(items)) => {
                if items.len() != tuple.types().len() {
                    return Err(error(
                        path,
                        format!(
                            "expected {} items (a {}), found {}",
                            tuple.types().len(),
                            self.wit(ty),
                            items.len()
                        ),
                    ));
                }
                let mut values = Vec::with_capacity(items.len());
                for (i, (item, item_ty)) in items.iter().zip(tuple.types()).enumerate() {
                    values.push(self.read_at(item, &item_ty, &format!("{path}[{i}]"), depth)?);
                }
                Val::Tuple(values)
            }
            (Type::Map(map), T::Table(table)) => {
                let mut pairs = Vec::with_capacity(table.len());
                for (key, item) in table {
                    let item_path = field_path(path, key);
                    let key =
                        self.read_at(&T::String(key.clone()), &map.key(), &item_path, depth)?;
                    pairs.push((key, self.read_at(item, &map.value(), &item_path, depth)?));
                }
                Val::Map(pairs)
            }
            (
                Type::Own(_)
                | Type::Borrow(_)
                | Type::Future(_)
                | Type::Stream(_)
                | Type::ErrorContext,
                _,
            ) => {
                return Err(error(
                    path,
                    format!("a {} cannot be written in a case file", self.wit(ty)),
                ));
            }
            _ => return Err(mismatch()),
        })
    }

    fn read_items(
        &self,
        items: &[toml::Value],
        ty: &Type,
        path: &str,
        depth: usize,
    ) -> Result<Vec<Val>> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.read_at(item, ty, &format!("{path}[{i}]"), depth))
            .collect()
    }

    /// `"none"`, `{ some = v }` (when `v` could read as `none`), or the value itself.
    fn read_option(
        &self,
        value: &toml::Value,
        inner: &Type,
        path: &str,
        depth: usize,
    ) -> Result<Val> {
        if value.as_str() == Some("none") {
            return Ok(Val::Option(None));
        }
        if let Some(table) = value.as_table()
            && table.len() == 1
            && !names_case(inner, "some")
            && let Some(payload) = table.get("some")
        {
            let inner_val = self.read_at(payload, inner, path, depth)?;
            return Ok(Val::Option(Some(Box::new(inner_val))));
        }
        let inner_val = self.read_at(value, inner, path, depth)?;
        Ok(Val::Option(Some(Box::new(inner_val))))
    }

    fn read_record(&self, table: &toml::Table, ty: &Type, path: &str, depth: usize) -> Result<Val> {
        let Type::Record(record) = ty else {
            unreachable!("read_record of a {}", self.wit(ty))
        };
        let table = self.expand(table, ty, path, depth)?;
        for key in table.keys() {
            if !record.fields().any(|f| f.name == key) {
                let names: Vec<&str> = record.fields().map(|f| f.name).collect();
                return Err(error(
                    &field_path(path, key),
                    format!("no such field; the fields are {}", names.join(", ")),
                ));
            }
        }
        let mut fields = Vec::with_capacity(record.fields().len());
        for field in record.fields() {
            let fpath = field_path(path, field.name);
            match table.get(field.name) {
                Some(v) => fields.push((
                    field.name.to_string(),
                    self.read_at(v, &field.ty, &fpath, depth)?,
                )),
                None if self.mode == Mode::Expectation => {}
                None if matches!(field.ty, Type::Option(_)) => {
                    fields.push((field.name.to_string(), Val::Option(None)))
                }
                None => {
                    return Err(error(
                        &fpath,
                        format!("missing (a {})", self.wit(&field.ty)),
                    ));
                }
            }
        }
        Ok(Val::Record(fields))
    }

    /// A record table with its `base` fixture applied; other tables as they are.
    fn expand<'t>(
        &self,
        table: &'t toml::Table,
        ty: &Type,
        path: &str,
        depth: usize,
    ) -> Result<Cow<'t, toml::Table>> {
        let Some(base) = extension_base(table, ty) else {
            return Ok(Cow::Borrowed(table));
        };
        let bpath = field_path(path, "base");
        let reference = match base.as_str() {
            Some(r) if r.starts_with('@') => r,
            _ => return Err(error(&bpath, "expected a fixture reference \"@name\"")),
        };
        let fixture = self.fixture(reference, &bpath, depth)?;
        let Some(base_table) = self.as_record_table(fixture, ty, &bpath, depth + 1)? else {
            return Err(error(
                &bpath,
                format!("fixture `{}` is not a table", &reference[1..]),
            ));
        };
        let overrides: toml::Table = table
            .iter()
            .filter(|(k, _)| *k != "base")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Cow::Owned(
            self.merge(base_table, overrides, ty, path, depth)?,
        ))
    }

    /// `value` as a plain table of a record of type `ty`: references and `base` resolved.
    /// `None` if it is not a table.
    fn as_record_table(
        &self,
        value: &toml::Value,
        ty: &Type,
        path: &str,
        depth: usize,
    ) -> Result<Option<toml::Table>> {
        match value {
            toml::Value::String(s) if s.starts_with('@') => {
                let fixture = self.fixture(s, path, depth)?;
                self.as_record_table(fixture, ty, path, depth + 1)
            }
            toml::Value::Table(t) => Ok(Some(self.expand(t, ty, path, depth)?.into_owned())),
            _ => Ok(None),
        }
    }

    /// The base's fields with `overrides` put over them; a nested record given as a plain
    /// table is merged into the base's field by field, anything else replaces.
    fn merge(
        &self,
        mut base: toml::Table,
        overrides: toml::Table,
        ty: &Type,
        path: &str,
        depth: usize,
    ) -> Result<toml::Table> {
        let Type::Record(record) = ty else {
            return Ok(overrides);
        };
        for (key, value) in overrides {
            let field_ty = record.fields().find(|f| f.name == key).map(|f| match f.ty {
                Type::Option(o) => o.ty(),
                other => other,
            });
            let merged = match (&field_ty, &value, base.get(&key)) {
                (Some(fty @ Type::Record(_)), toml::Value::Table(over), Some(old))
                    if extension_base(over, fty).is_none() =>
                {
                    let fpath = field_path(path, &key);
                    match self.as_record_table(old, fty, &fpath, depth)? {
                        Some(old) => {
                            toml::Value::Table(self.merge(old, over.clone(), fty, &fpath, depth)?)
                        }
                        None => value,
                    }
                }
                _ => value,
            };
            base.insert(key, merged);
        }
        Ok(base)
    }

    /// `"case"` or `{ case = payload }`.
    fn read_variant(
        &self,
        value: &toml::Value,
        ty: &Type,
        path: &str,
        depth: usize,
    ) -> Result<Val> {
        let Type::Variant(variant) = ty else {
            unreachable!()
        };
        let (name, payload) = one_key(value).ok_or_else(|| {
            error(
                path,
                format!("expected {}, found {}", self.expected(ty), found(value)),
            )
        })?;
        let Some(case) = variant.cases().find(|c| c.name == name) else {
            return Err(error(
                path,
                format!("no case `{name}`; expected {}", self.expected(ty)),
            ));
        };
        let payload = match (case.ty, payload) {
            (None, None) => None,
            (Some(pty), Some(p)) => Some(Box::new(self.read_at(
                p,
                &pty,
                &field_path(path, name),
                depth,
            )?)),
            (Some(pty), None) => {
                return Err(error(
                    path,
                    format!(
                        "case `{name}` has a payload: write {{ {name} = <{}> }}",
                        self.wit(&pty)
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(error(
                    path,
                    format!("case `{name}` has no payload: write \"{name}\""),
                ));
            }
        };
        Ok(Val::Variant(name.to_string(), payload))
    }

    /// `"ok"`, `"err"`, `{ ok = v }` or `{ err = v }`.
    fn read_result(&self, value: &toml::Value, ty: &Type, path: &str, depth: usize) -> Result<Val> {
        let Type::Result(result) = ty else {
            unreachable!()
        };
        let (name, payload) = one_key(value).ok_or_else(|| {
            error(
                path,
                format!("expected {}, found {}", self.expected(ty), found(value)),
            )
        })?;
        let side = match name {
            "ok" => result.ok(),
            "err" => result.err(),
            _ => return Err(error(path, format!("expected {}", self.expected(ty)))),
        };
        let payload = match (side, payload) {
            (None, None) => None,
            (Some(pty), Some(p)) => Some(Box::new(self.read_at(
                p,
                &pty,
                &field_path(path, name),
                depth,
            )?)),
            _ => return Err(error(path, format!("expected {}", self.expected(ty)))),
        };
        Ok(Val::Result(if name == "ok" {
            Ok(payload)
        } else {
            Err(payload)
        }))
    }
}

/// `"name"` -> (name, None); `{ name = payload }` -> (name, Some(payload)).
fn one_key(value: &toml::Value) -> Option<(&str, Option<&toml::Value>)> {
    match value {
        toml::Value::String(s) => Some((s, None)),
        toml::Value::Table(t) if t.len() == 1 => {
            t.iter().next().map(|(k, v)| (k.as_str(), Some(v)))
        }
        _ => None,
    }
}

/// The `base` of a record table that extends a fixture, unless the record has a field
/// named `base` of its own.
fn extension_base<'t>(table: &'t toml::Table, ty: &Type) -> Option<&'t toml::Value> {
    match ty {
        Type::Record(r) if !r.fields().any(|f| f.name == "base") => table.get("base"),
        _ => None,
    }
}

/// Whether `{ some = v }` would read as a value of `ty` itself.
fn names_case(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Record(r) => r.fields().any(|f| f.name == name),
        Type::Variant(v) => v.cases().any(|c| c.name == name),
        Type::Map(_) => true,
        _ => false,
    }
}

fn int<N: TryFrom<i64>>(i: i64, path: &str, ty: &str) -> Result<N> {
    N::try_from(i).map_err(|_| error(path, format!("{i} is out of range for a {ty}")))
}

/// What a value of `ty` looks like in a case file, for error messages.
fn expected(ty: &Type, names: &[(String, Type)]) -> String {
    match ty {
        Type::Bool => "true or false".into(),
        Type::String => "a string".into(),
        Type::Char => "a string of one character".into(),
        Type::Float32 | Type::Float64 => "a number".into(),
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::S8
        | Type::S16
        | Type::S32
        | Type::S64 => {
            format!("an integer ({})", wit_type(ty, names))
        }
        Type::Record(r) => format!(
            "a table with fields {}",
            r.fields().map(|f| f.name).collect::<Vec<_>>().join(", ")
        ),
        Type::Enum(e) => format!(
            "one of {}",
            e.names()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(v) => format!(
            "one of {}",
            v.cases()
                .map(|c| match c.ty {
                    None => format!("\"{}\"", c.name),
                    Some(t) => format!("{{ {} = <{}> }}", c.name, wit_type(&t, names)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Result(_) => "\"ok\", \"err\", { ok = <value> } or { err = <value> }".into(),
        Type::Flags(f) => format!(
            "an array of flags among {}",
            f.names()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::List(_) | Type::FixedLengthList(_) | Type::Tuple(_) => {
            format!("an array (a {})", wit_type(ty, names))
        }
        Type::Map(_) => "a table".into(),
        Type::Option(o) => format!("\"none\" or {}", expected(&o.ty(), names)),
        _ => format!("a {}", wit_type(ty, names)),
    }
}

/// What a TOML value is, for error messages.
fn found(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string \"{}\"", escape(s)),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(_) => "a date".into(),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// The WIT spelling of `ty`. A record, variant, enum, flags or resource type is named
/// when exactly one entry of `names` is that type; otherwise (two names of one structure,
/// or none) it is spelled out.
pub fn wit_type(ty: &Type, names: &[(String, Type)]) -> String {
    let named = matches!(
        ty,
        Type::Record(_)
            | Type::Variant(_)
            | Type::Enum(_)
            | Type::Flags(_)
            | Type::Own(_)
            | Type::Borrow(_)
    );
    if named {
        let mut matching = names.iter().filter(|(_, t)| t == ty);
        if let (Some((name, _)), None) = (matching.next(), matching.next()) {
            return match ty {
                Type::Borrow(_) => format!("borrow<{name}>"),
                _ => name.clone(),
            };
        }
    }
    let w = |t: &Type| wit_type(t, names);
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", w(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, {}>", w(&l.ty()), l.len()),
        Type::Map(m) => format!("map<{}, {}>", w(&m.key()), w(&m.value())),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types().map(|t| w(&t)).collect::<Vec<_>>().join(", ")
        ),
        Type::Option(o) => format!("option<{}>", w(&o.ty())),
        Type::Result(r) => match (r.ok(), r.err()) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", w(&ok)),
            (None, Some(err)) => format!("result<_, {}>", w(&err)),
            (Some(ok), Some(err)) => format!("result<{}, {}>", w(&ok), w(&err)),
        },
        Type::Record(r) => format!(
            "record {{ {} }}",
            r.fields()
                .map(|f| format!("{}: {}", f.name, w(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(v) => format!(
            "variant {{ {} }}",
            v.cases()
                .map(|c| match c.ty {
                    None => c.name.to_string(),
                    Some(t) => format!("{}({})", c.name, w(&t)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Own(_) => "resource".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(f) => match f.ty() {
            Some(t) => format!("future<{}>", w(&t)),
            None => "future".into(),
        },
        Type::Stream(s) => match s.ty() {
            Some(t) => format!("stream<{}>", w(&t)),
            None => "stream".into(),
        },
        Type::ErrorContext => "error-context".into(),
    }
}

/// `val` in the case-file notation, on one line: `{ subject = "x", body = "a\nb" }`,
/// `ask-user`, `{ chat = "hello" }`, `none`. Record fields that are `none` are left out,
/// as a case file would.
pub fn render(val: &Val) -> String {
    let mut out = String::new();
    render_into(&mut out, val);
    out
}

fn render_into(out: &mut String, val: &Val) {
    match val {
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::S8(n) => push(out, n),
        Val::U8(n) => push(out, n),
        Val::S16(n) => push(out, n),
        Val::U16(n) => push(out, n),
        Val::S32(n) => push(out, n),
        Val::U32(n) => push(out, n),
        Val::S64(n) => push(out, n),
        Val::U64(n) => push(out, n),
        Val::Float32(f) => render_float(out, f64::from(*f)),
        Val::Float64(f) => render_float(out, *f),
        Val::Char(c) => {
            let _ = write!(out, "\"{}\"", escape(&c.to_string()));
        }
        Val::String(s) => {
            let _ = write!(out, "\"{}\"", escape(s));
        }
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            render_seq(out, items.iter(), render_into)
        }
        Val::Map(pairs) => render_seq(out, pairs.iter(), |out, (k, v)| {
            out.push('[');
            render_into(out, k);
            out.push_str(", ");
            render_into(out, v);
            out.push(']');
        }),
        Val::Flags(names) => render_seq(out, names.iter(), |out, n| out.push_str(n)),
        Val::Record(fields) => {
            let shown: Vec<_> = fields
                .iter()
                .filter(|(_, v)| !matches!(v, Val::Option(None)))
                .collect();
            if shown.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{ ");
            for (i, (name, v)) in shown.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{name} = ");
                render_into(out, v);
            }
            out.push_str(" }");
        }
        Val::Variant(name, payload) => render_case(out, name, payload.as_deref()),
        Val::Enum(name) => out.push_str(name),
        Val::Option(None) => out.push_str("none"),
        // What would read back as `none` says `some` explicitly.
        Val::Option(Some(v)) => match &**v {
            Val::Option(_) => render_case(out, "some", Some(v)),
            Val::String(s) if s == "none" => render_case(out, "some", Some(v)),
            _ => render_into(out, v),
        },
        Val::Result(Ok(v)) => render_case(out, "ok", v.as_deref()),
        Val::Result(Err(v)) => render_case(out, "err", v.as_deref()),
        Val::Resource(_) => out.push_str("<resource>"),
        Val::Future(_) => out.push_str("<future>"),
        Val::Stream(_) => out.push_str("<stream>"),
        Val::ErrorContext(_) => out.push_str("<error-context>"),
    }
}

fn push(out: &mut String, n: impl fmt::Display) {
    let _ = write!(out, "{n}");
}

fn render_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(out, "{f:?}");
    }
}

fn render_case(out: &mut String, name: &str, payload: Option<&Val>) {
    match payload {
        None => out.push_str(name),
        Some(v) => {
            let _ = write!(out, "{{ {name} = ");
            render_into(out, v);
            out.push_str(" }");
        }
    }
}

fn render_seq<I: Iterator>(out: &mut String, items: I, mut each: impl FnMut(&mut String, I::Item)) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        each(out, item);
    }
    out.push(']');
}

/// `s` escaped as in a TOML basic string (without the quotes).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Where `actual` differs from `expected`, or `None` when it matches: a record matches
/// when the fields `expected` lists do (an expectation may leave fields out). The answer
/// is the path of the first difference (`""` for the whole value).
pub fn first_difference(expected: &Val, actual: &Val) -> Option<String> {
    difference_at(expected, actual, "")
}

fn difference_at(expected: &Val, actual: &Val, path: &str) -> Option<String> {
    let here = || Some(path.to_string());
    let seq = |e: &[Val], a: &[Val]| {
        if e.len() != a.len() {
            return here();
        }
        e.iter()
            .zip(a)
            .enumerate()
            .find_map(|(i, (e, a))| difference_at(e, a, &format!("{path}[{i}]")))
    };
    let payload = |name: &str, e: &Option<Box<Val>>, a: &Option<Box<Val>>| match (e, a) {
        (None, None) => None,
        (Some(e), Some(a)) => difference_at(e, a, &field_path(path, name)),
        _ => here(),
    };
    match (expected, actual) {
        (Val::Record(e), Val::Record(a)) => {
            e.iter()
                .find_map(|(name, ev)| match a.iter().find(|(n, _)| n == name) {
                    Some((_, av)) => difference_at(ev, av, &field_path(path, name)),
                    None => Some(field_path(path, name)),
                })
        }
        (Val::List(e), Val::List(a))
        | (Val::Tuple(e), Val::Tuple(a))
        | (Val::FixedLengthList(e), Val::FixedLengthList(a)) => seq(e, a),
        (Val::Variant(en, ep), Val::Variant(an, ap)) if en == an => payload(en, ep, ap),
        (Val::Option(e), Val::Option(a)) => match (e, a) {
            (None, None) => None,
            (Some(e), Some(a)) => difference_at(e, a, path),
            _ => here(),
        },
        (Val::Result(Ok(e)), Val::Result(Ok(a))) => payload("ok", e, a),
        (Val::Result(Err(e)), Val::Result(Err(a))) => payload("err", e, a),
        (Val::Flags(e), Val::Flags(a)) => {
            let same = e.len() == a.len() && e.iter().all(|f| a.contains(f));
            if same { None } else { here() }
        }
        (Val::Map(e), Val::Map(a)) => {
            if e.len() != a.len() {
                return here();
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, ((ek, ev), (ak, av)))| {
                    let p = format!("{path}[{i}]");
                    difference_at(ek, ak, &p).or_else(|| difference_at(ev, av, &p))
                })
        }
        (e, a) if is_scalar(e) && e == a => None,
        _ => here(),
    }
}

fn is_scalar(v: &Val) -> bool {
    matches!(
        v,
        Val::Bool(_)
            | Val::S8(_)
            | Val::U8(_)
            | Val::S16(_)
            | Val::U16(_)
            | Val::S32(_)
            | Val::U32(_)
            | Val::S64(_)
            | Val::U64(_)
            | Val::Float32(_)
            | Val::Float64(_)
            | Val::Char(_)
            | Val::String(_)
            | Val::Enum(_)
    )
}

/// The strings inside `val`, for `contains` checks on text answers.
pub fn strings(val: &Val) -> Vec<&str> {
    let mut out = Vec::new();
    collect_strings(val, &mut out);
    out
}

fn collect_strings<'v>(val: &'v Val, out: &mut Vec<&'v str>) {
    match val {
        Val::String(s) => out.push(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            items.iter().for_each(|v| collect_strings(v, out))
        }
        Val::Record(fields) => fields.iter().for_each(|(_, v)| collect_strings(v, out)),
        Val::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            collect_strings(k, out);
            collect_strings(v, out);
        }),
        Val::Variant(_, Some(v))
        | Val::Option(Some(v))
        | Val::Result(Ok(Some(v)) | Err(Some(v))) => collect_strings(v, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::types::ComponentItem;

    /// A component whose imported function `f` takes one parameter of each kind the
    /// notation covers, and whose named types are imported under their names.
    const TYPES_WAT: &str = r#"
        (component
          (import "iface" (instance
            (type $id0 (record (field "uri" string) (field "display-name" (option string))))
            (export "identity" (type $id (eq $id0)))
            (type $rec0 (record (field "name" string) (field "count" u8) (field "from" $id)
                                (field "note" (option string))))
            (export "rec" (type $rec (eq $rec0)))
            (type $var0 (variant (case "ask-user") (case "chat" string)))
            (export "var" (type $var (eq $var0)))
            (type $en0 (enum "chat" "invitation"))
            (export "kind" (type $en (eq $en0)))
            (type $fl0 (flags "x" "y"))
            (export "fl" (type $fl (eq $fl0)))
            (type $same0 (record (field "a" string)))
            (export "same-1" (type $same1 (eq $same0)))
            (export "same-2" (type $same2 (eq $same0)))
            (type $f (func
              (param "rec" $rec) (param "var" $var) (param "kind" $en)
              (param "maybe" (option $rec)) (param "list" (list $rec))
              (param "tuple" (tuple u16 s8)) (param "fl" $fl)
              (param "res" (result string (error u32))) (param "c" char)
              (param "nested" (option (option string))) (param "same" $same1)
              (param "text" (option string))
              (result $var)))
            (export "f" (func (type $f)))))
        )
    "#;

    struct Types {
        params: Vec<(String, Type)>,
        result: Type,
        names: Vec<(String, Type)>,
    }

    /// The types of `f` and the names of the instance type, as the harness sees an
    /// exported interface.
    fn types() -> Types {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let component = wasmtime::component::Component::new(&engine, TYPES_WAT).unwrap();
        let ty = component.component_type();
        let ComponentItem::ComponentInstance(instance) =
            ty.get_import(&engine, "iface").unwrap().ty
        else {
            panic!("not an instance")
        };
        let mut names = Vec::new();
        let mut func = None;
        for (name, item) in instance.exports(&engine) {
            match item.ty {
                ComponentItem::Type(t) => names.push((name.to_string(), t)),
                ComponentItem::ComponentFunc(f) => func = Some(f),
                _ => {}
            }
        }
        let func = func.unwrap();
        Types {
            params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
            result: func.results().next().unwrap(),
            names,
        }
    }

    impl Types {
        fn param(&self, name: &str) -> &Type {
            &self.params.iter().find(|(n, _)| n == name).unwrap().1
        }
    }

    fn toml(text: &str) -> toml::Value {
        let table: toml::Table = toml::from_str(&format!("v = {text}")).unwrap();
        table["v"].clone()
    }

    fn read(ty: &Type, text: &str) -> Result<Val> {
        read_with(&toml::Table::new(), Mode::Argument, ty, text)
    }

    fn read_with(fixtures: &toml::Table, mode: Mode, ty: &Type, text: &str) -> Result<Val> {
        Reader::new(fixtures, mode).read(&toml(text), ty, "arg")
    }

    fn fixtures() -> toml::Table {
        toml::from_str(
            r#"
            [alice]
            name = "alice"
            count = 1
            from = { uri = "sip:alice@example.com", display-name = "Alice" }
            note = "hello"

            [bob]
            base = "@alice"
            name = "bob"

            [loop-a]
            base = "@loop-b"
            [loop-b]
            base = "@loop-a"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn records_read_with_kebab_names_and_absent_options() {
        let t = types();
        let v = read(
            t.param("rec"),
            r#"{ name = "x", count = 3, from = { uri = "sip:a@b" } }"#,
        )
        .unwrap();
        assert_eq!(
            render(&v),
            r#"{ name = "x", count = 3, from = { uri = "sip:a@b" } }"#
        );
        let Val::Record(fields) = &v else { panic!() };
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[3], ("note".to_string(), Val::Option(None)));
    }

    #[test]
    fn errors_name_the_path_of_the_bad_field() {
        let t = types();
        let rec = t.param("rec");
        let e = read(rec, r#"{ name = "x", count = 3, from = { uri = 5 } }"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "arg.from.uri: expected a string, found the integer 5"
        );
        let e = read(rec, r#"{ name = "x", count = 300, from = { uri = "u" } }"#).unwrap_err();
        assert_eq!(e.to_string(), "arg.count: 300 is out of range for a u8");
        let e = read(rec, r#"{ name = "x", from = { uri = "u" } }"#).unwrap_err();
        assert_eq!(e.to_string(), "arg.count: missing (a u8)");
        let e = read(
            rec,
            r#"{ name = "x", count = 1, from = { uri = "u" }, colour = 1 }"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "arg.colour");
        assert!(e.message.contains("no such field"), "{e}");
        let e = read(
            t.param("list"),
            r#"[{ name = "x", count = 1, from = { uri = 1 } }]"#,
        )
        .unwrap_err();
        assert_eq!(e.path, "arg[0].from.uri");
    }

    #[test]
    fn variants_enums_and_flags() {
        let t = types();
        let var = t.param("var");
        assert_eq!(render(&read(var, r#""ask-user""#).unwrap()), "ask-user");
        assert_eq!(
            render(&read(var, r#"{ chat = "hi" }"#).unwrap()),
            r#"{ chat = "hi" }"#
        );
        let e = read(var, r#""chat""#).unwrap_err();
        assert!(e.message.contains("has a payload"), "{e}");
        let e = read(var, r#""accept""#).unwrap_err();
        assert!(e.message.contains("no case `accept`"), "{e}");
        assert_eq!(render(&read(t.param("kind"), r#""chat""#).unwrap()), "chat");
        assert!(read(t.param("kind"), r#""mail""#).is_err());
        assert_eq!(render(&read(t.param("fl"), r#"["y"]"#).unwrap()), "[y]");
        assert!(read(t.param("fl"), r#"["z"]"#).is_err());
    }

    #[test]
    fn options_tuples_results_and_chars() {
        let t = types();
        assert_eq!(
            render(&read(t.param("maybe"), r#""none""#).unwrap()),
            "none"
        );
        assert_eq!(render(&read(t.param("text"), r#""none""#).unwrap()), "none");
        let some_none = read(t.param("text"), r#"{ some = "none" }"#).unwrap();
        assert_eq!(render(&some_none), r#"{ some = "none" }"#);
        let nested = read(t.param("nested"), r#"{ some = "none" }"#).unwrap();
        assert_eq!(render(&nested), "{ some = none }");
        assert_eq!(
            render(&read(t.param("tuple"), "[1, -2]").unwrap()),
            "[1, -2]"
        );
        assert!(read(t.param("tuple"), "[1]").is_err());
        assert_eq!(
            read(t.param("tuple"), "[1, -200]").unwrap_err().path,
            "arg[1]"
        );
        assert_eq!(
            render(&read(t.param("res"), r#"{ err = 7 }"#).unwrap()),
            "{ err = 7 }"
        );
        assert_eq!(render(&read(t.param("c"), r#""é""#).unwrap()), r#""é""#);
        assert!(read(t.param("c"), r#""ab""#).is_err());
    }

    #[test]
    fn fixtures_are_referenced_and_extended() {
        let t = types();
        let f = fixtures();
        let rec = t.param("rec");
        let alice = read_with(&f, Mode::Argument, rec, r#""@alice""#).unwrap();
        assert!(render(&alice).starts_with(r#"{ name = "alice""#));
        // Fields given replace the fixture's; a nested record is merged field by field.
        let eve = read_with(
            &f,
            Mode::Argument,
            rec,
            r#"{ base = "@bob", count = 2, from = { display-name = "Eve" } }"#,
        )
        .unwrap();
        assert_eq!(
            render(&eve),
            r#"{ name = "bob", count = 2, from = { uri = "sip:alice@example.com", display-name = "Eve" }, note = "hello" }"#
        );
        // In a list, too.
        let list = read_with(&f, Mode::Argument, t.param("list"), r#"["@alice", "@bob"]"#).unwrap();
        assert_eq!(render(&list).matches("count = 1").count(), 2);
        // A string-typed value is never a reference.
        let text = read_with(&f, Mode::Argument, t.param("text"), r#""@alice""#).unwrap();
        assert_eq!(render(&text), r#""@alice""#);
        let e = read_with(&f, Mode::Argument, rec, r#""@carol""#).unwrap_err();
        assert!(e.message.starts_with("no fixture named `carol`"), "{e}");
        let e = read_with(&f, Mode::Argument, rec, r#""@loop-a""#).unwrap_err();
        assert!(e.message.contains("loop"), "{e}");
    }

    #[test]
    fn expectations_compare_only_the_fields_they_list() {
        let t = types();
        let rec = t.param("rec");
        let actual = read(
            rec,
            r#"{ name = "x", count = 3, from = { uri = "u", display-name = "U" } }"#,
        )
        .unwrap();
        let partial = read_with(
            &toml::Table::new(),
            Mode::Expectation,
            rec,
            r#"{ count = 3 }"#,
        )
        .unwrap();
        assert_eq!(first_difference(&partial, &actual), None);
        let wrong = read_with(
            &toml::Table::new(),
            Mode::Expectation,
            rec,
            r#"{ from = { display-name = "V" } }"#,
        )
        .unwrap();
        assert_eq!(
            first_difference(&wrong, &actual).as_deref(),
            Some("from.display-name")
        );
        let none = read_with(
            &toml::Table::new(),
            Mode::Expectation,
            rec,
            r#"{ note = "none" }"#,
        )
        .unwrap();
        assert_eq!(first_difference(&none, &actual), None);
        let var = &t.result;
        let ask = read(var, r#""ask-user""#).unwrap();
        let chat = read(var, r#"{ chat = "hi" }"#).unwrap();
        assert_eq!(first_difference(&ask, &chat).as_deref(), Some(""));
        assert_eq!(first_difference(&chat, &chat), None);
    }

    #[test]
    fn rendering_escapes_strings_and_leaves_out_none_fields() {
        let v = Val::Record(vec![
            ("subject".into(), Val::Option(None)),
            ("body".into(), Val::String("a \"b\"\n\tc\u{1}".into())),
        ]);
        assert_eq!(render(&v), r#"{ body = "a \"b\"\n\tc\u0001" }"#);
        assert_eq!(render(&Val::Option(Some(Box::new(Val::U8(3))))), "3");
        assert_eq!(render(&Val::Record(vec![])), "{}");
        assert_eq!(strings(&v), vec!["a \"b\"\n\tc\u{1}"]);
    }

    #[test]
    fn wit_types_are_named_when_the_name_is_unambiguous() {
        let t = types();
        assert_eq!(wit_type(t.param("rec"), &t.names), "rec");
        assert_eq!(wit_type(t.param("list"), &t.names), "list<rec>");
        assert_eq!(wit_type(t.param("maybe"), &t.names), "option<rec>");
        assert_eq!(wit_type(t.param("res"), &t.names), "result<string, u32>");
        assert_eq!(wit_type(t.param("tuple"), &t.names), "tuple<u16, s8>");
        // Two names for one structure: spelled out rather than guessed.
        assert_eq!(wit_type(t.param("same"), &t.names), "record { a: string }");
        assert_eq!(
            wit_type(t.param("rec"), &[]),
            "record { name: string, count: u8, from: record { uri: string, display-name: option<string> }, note: option<string> }"
        );
    }
}
