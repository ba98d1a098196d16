//! The types of the flow language and the tables of declared record and enum types.

use std::collections::HashMap;

use nudge_diagnostics::FileSpan;

use crate::analysis::SymbolId;

/// Index of a record type in a [`TypeTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordId(pub u32);

/// Index of a string enum in a [`TypeTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnumId(pub u32);

/// A type of the flow language.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `decimal`
    Decimal,
    /// `money`, an exact amount
    Money,
    /// `percent`
    Percent,
    /// `string`
    String,
    /// `duration`
    Duration,
    /// `time`, an instant
    Time,
    /// `date`
    Date,
    /// `time_of_day`
    TimeOfDay,
    /// `timezone`
    Timezone,
    /// `list<T>`
    List(Box<Ty>),
    /// A record: a declared type, an event or the profile.
    Record(RecordId),
    /// A string enum.
    Enum(EnumId),
    /// `T?`
    Optional(Box<Ty>),
    /// The type of a lambda.
    Fn(Vec<Ty>, Box<Ty>),
    /// The type of the literal `none`, before it meets an optional.
    Null,
    /// An expression already reported as wrong; compatible with everything.
    Error,
}

impl Ty {
    /// Whether the type is the error type (no further diagnostics wanted).
    pub fn is_error(&self) -> bool {
        matches!(self, Ty::Error)
    }

    /// Whether the type is `T?`.
    pub fn is_optional(&self) -> bool {
        matches!(self, Ty::Optional(_))
    }

    /// The type without its `?`.
    pub fn strip_optional(&self) -> &Ty {
        match self {
            Ty::Optional(t) => t,
            t => t,
        }
    }

    /// `T?`, without doubling the `?`.
    pub fn optional(self) -> Ty {
        match self {
            Ty::Optional(_) | Ty::Error | Ty::Null => self,
            t => Ty::Optional(Box::new(t)),
        }
    }

    /// Whether arithmetic on numbers applies (int or decimal).
    pub fn is_number(&self) -> bool {
        matches!(self, Ty::Int | Ty::Decimal)
    }
}

/// What kind of declaration a record type comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// `type X { }`
    Type,
    /// `event x "X" { }`
    Event,
    /// The profile: stdlib traits and the project's `profile { }`.
    Profile,
    /// The fields several awaited events share, or a message's content.
    Synthetic,
}

/// One field of a record type.
#[derive(Clone, Debug)]
pub struct FieldDef {
    /// The field's name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
    /// Where it is declared, if it is declared in source.
    pub at: Option<FileSpan>,
    /// Its symbol, if it is declared in source.
    pub symbol: Option<SymbolId>,
}

/// A record type.
#[derive(Clone, Debug)]
pub struct RecordDef {
    /// The name used in type annotations (an event's flow name for events).
    pub name: String,
    /// Where it comes from.
    pub kind: RecordKind,
    /// The fields in declaration order.
    pub fields: Vec<FieldDef>,
    /// Field index by name.
    pub by_name: HashMap<String, usize>,
    /// The wire name, for events.
    pub wire: Option<String>,
    /// Where the name is declared.
    pub at: Option<FileSpan>,
}

impl RecordDef {
    /// A record with no fields yet.
    pub fn new(name: impl Into<String>, kind: RecordKind, at: Option<FileSpan>) -> Self {
        RecordDef {
            name: name.into(),
            kind,
            fields: Vec::new(),
            by_name: HashMap::new(),
            wire: None,
            at,
        }
    }

    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.by_name.get(name).map(|&i| &self.fields[i])
    }

    /// Adds a field; returns the earlier field of that name instead when there is one.
    pub fn add_field(&mut self, field: FieldDef) -> Result<(), &FieldDef> {
        if let Some(&i) = self.by_name.get(&field.name) {
            return Err(&self.fields[i]);
        }
        self.by_name.insert(field.name.clone(), self.fields.len());
        self.fields.push(field);
        Ok(())
    }
}

/// A string enum type.
#[derive(Clone, Debug)]
pub struct EnumDef {
    /// The type's name.
    pub name: String,
    /// The allowed values.
    pub members: Vec<String>,
}

/// Every record and enum type of a project.
#[derive(Clone, Debug, Default)]
pub struct TypeTable {
    /// Record types by [`RecordId`].
    pub records: Vec<RecordDef>,
    /// Enum types by [`EnumId`].
    pub enums: Vec<EnumDef>,
}

impl TypeTable {
    /// Adds a record type.
    pub fn add_record(&mut self, def: RecordDef) -> RecordId {
        self.records.push(def);
        RecordId(self.records.len() as u32 - 1)
    }

    /// Adds an enum type.
    pub fn add_enum(&mut self, def: EnumDef) -> EnumId {
        self.enums.push(def);
        EnumId(self.enums.len() as u32 - 1)
    }

    /// The record with this id.
    pub fn record(&self, id: RecordId) -> &RecordDef {
        &self.records[id.0 as usize]
    }

    /// The enum with this id.
    pub fn enum_def(&self, id: EnumId) -> &EnumDef {
        &self.enums[id.0 as usize]
    }

    /// The type as written in source (`list<Product>?`).
    pub fn display(&self, ty: &Ty) -> String {
        let mut out = String::new();
        self.write(ty, &mut out);
        out
    }

    fn write(&self, ty: &Ty, out: &mut String) {
        let name = match ty {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Decimal => "decimal",
            Ty::Money => "money",
            Ty::Percent => "percent",
            Ty::String => "string",
            Ty::Duration => "duration",
            Ty::Time => "time",
            Ty::Date => "date",
            Ty::TimeOfDay => "time_of_day",
            Ty::Timezone => "timezone",
            Ty::Null => "none",
            Ty::Error => "{unknown}",
            Ty::Record(r) => &self.record(*r).name,
            Ty::Enum(e) => &self.enum_def(*e).name,
            Ty::List(t) => {
                out.push_str("list<");
                self.write(t, out);
                out.push('>');
                return;
            }
            Ty::Optional(t) => {
                self.write(t, out);
                out.push('?');
                return;
            }
            Ty::Fn(params, ret) => {
                out.push_str("fn(");
                for (i, p) in params.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.write(p, out);
                }
                out.push_str(") -> ");
                self.write(ret, out);
                return;
            }
        };
        out.push_str(name);
    }
}

/// The built-in scalar type with this name (`list` is handled by the caller).
pub fn scalar(name: &str) -> Option<Ty> {
    Some(match name {
        "bool" => Ty::Bool,
        "int" => Ty::Int,
        "decimal" => Ty::Decimal,
        "money" => Ty::Money,
        "percent" => Ty::Percent,
        "string" => Ty::String,
        "duration" => Ty::Duration,
        "time" => Ty::Time,
        "date" => Ty::Date,
        "time_of_day" => Ty::TimeOfDay,
        "timezone" => Ty::Timezone,
        _ => return None,
    })
}

/// Every built-in type name, for suggestions.
pub const BUILTIN_TYPE_NAMES: &[&str] = &[
    "bool",
    "int",
    "decimal",
    "money",
    "percent",
    "string",
    "duration",
    "time",
    "date",
    "time_of_day",
    "timezone",
    "list",
];

/// Whether a value of type `actual` may be used where `expected` is required.
pub fn assignable(actual: &Ty, expected: &Ty) -> Assign {
    use Ty::*;
    match (actual, expected) {
        (Error, _) | (_, Error) => Assign::Yes,
        (a, b) if a == b => Assign::Yes,
        (Int, Decimal) => Assign::Yes,
        (Enum(_), String) => Assign::Yes,
        (Null, Optional(_)) => Assign::Yes,
        (Optional(a), Optional(b)) => assignable(a, b),
        (a, Optional(b)) => assignable(a, b),
        (Optional(a), b) => match assignable(a, b) {
            Assign::Yes | Assign::Missing => Assign::Missing,
            Assign::No => Assign::No,
        },
        (List(a), List(b)) => match assignable(a, b) {
            Assign::Yes => Assign::Yes,
            _ => Assign::No,
        },
        _ => Assign::No,
    }
}

/// The answer of [`assignable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assign {
    /// It fits.
    Yes,
    /// It would fit, but it may be none.
    Missing,
    /// It does not fit.
    No,
}
