//! The binary encoding of a bundle.
//!
//! Hand-written rather than derived so that the bytes are fixed by this file
//! alone (no serializer's defaults can change them), decoding never
//! allocates more than the input can hold, and every error names the byte
//! where it was found.
//!
//! Layout: the magic bytes, the format version (u16, little-endian), then the
//! [`Bundle`] body. Unsigned integers are LEB128 varints, signed ones are
//! zigzag varints, `u8` and `bool` are one byte, strings and lists are a
//! varint length then their items, an `Option` is a 0/1 byte then its value,
//! an enum is a tag byte then its fields, a struct is its fields in order,
//! and a decimal is its zigzag mantissa then its scale byte.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bundle::*;
use crate::instr::Instr;
use crate::retention::{Readers, Retention};
use crate::value::{Record, Type, Value};

/// The first bytes of every bundle file.
pub const MAGIC: [u8; 6] = *b"NUDGE\0";

/// The bundle format this crate writes (2 added `Flow::local_names`, 3
/// added `Bundle::retention`, 4 added `Policy::currency`, 5 added
/// `Bundle::change_points`, 6 added `Readers::within`, 7 added `Split::optimise`).
pub const FORMAT_VERSION: u16 = 7;

/// The oldest format this crate still reads: a version 2 bundle has no
/// retention, which decoding derives from its code (stores and checkpoints
/// written before version 3 embed such bundles).
pub const OLDEST_FORMAT_VERSION: u16 = 2;

/// Values and types nest at most this deep; deeper input is refused rather
/// than risking the decoder's stack.
const MAX_DEPTH: u32 = 64;

/// Why bytes could not be decoded as a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The file does not start with [`MAGIC`].
    BadMagic,
    /// The file was written in a format this version does not read.
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// The file ends in the middle of a value.
    Truncated {
        /// The byte offset where more input was needed.
        at: usize,
    },
    /// The bytes at `at` do not encode what was expected there.
    Invalid {
        /// The byte offset.
        at: usize,
        /// What was wrong.
        what: String,
    },
    /// The bundle decodes but refers to something it does not contain.
    Inconsistent(String),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic => f.write_str("not a Nudge bundle (bad magic number)"),
            DecodeError::UnsupportedVersion { found, supported } => write!(
                f,
                "unsupported bundle format version {found} (this nudge reads versions {OLDEST_FORMAT_VERSION} to {supported}); rebuild the bundle with this nudge"
            ),
            DecodeError::Truncated { at } => write!(f, "the bundle is truncated at byte {at}"),
            DecodeError::Invalid { at, what } => {
                write!(f, "the bundle is corrupt at byte {at}: {what}")
            }
            DecodeError::Inconsistent(what) => write!(f, "the bundle is corrupt: {what}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// An output buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn uvar(&mut self, mut v: u128) {
        loop {
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(low);
                return;
            }
            self.buf.push(low | 0x80);
        }
    }

    fn ivar(&mut self, v: i128) {
        self.uvar(((v << 1) ^ (v >> 127)) as u128);
    }
}

/// An input cursor.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
    /// The format version being read: parts added later are read only
    /// from the versions that have them.
    version: u16,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos,
            depth: 0,
            version: FORMAT_VERSION,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn invalid(&self, at: usize, what: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            at,
            what: what.into(),
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated { at: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    fn uvar(&mut self, bits: u32) -> Result<u128, DecodeError> {
        let start = self.pos;
        let mut v: u128 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            if shift >= bits || (shift > 0 && u128::from(b & 0x7f) >> (bits - shift) != 0) {
                return Err(self.invalid(start, format!("integer wider than {bits} bits")));
            }
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // A zero last byte after the first pads the number: refused,
                // so that one bundle has exactly one encoding.
                if b == 0 && shift > 0 {
                    return Err(self.invalid(start, "overlong integer"));
                }
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn ivar(&mut self, bits: u32) -> Result<i128, DecodeError> {
        let u = self.uvar(bits)?;
        Ok(((u >> 1) as i128) ^ -((u & 1) as i128))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.uvar(32)? as usize;
        // Every item takes at least one byte, so a longer list cannot be in the
        // input: refuse before allocating for it.
        let rest = self.buf.len() - self.pos;
        if n > rest {
            return Err(DecodeError::Truncated {
                at: self.buf.len().max(at),
            });
        }
        Ok(n)
    }

    fn tag(&mut self, what: &str, max: u8) -> Result<u8, DecodeError> {
        let at = self.pos;
        let t = self.byte()?;
        if t > max {
            return Err(self.invalid(at, format!("unknown {what} tag {t}")));
        }
        Ok(t)
    }

    fn enter(&mut self) -> Result<(), DecodeError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.invalid(self.pos, "values nested too deeply"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }
}

/// A type with a binary encoding.
pub(crate) trait Wire: Sized {
    fn put(&self, w: &mut Writer);
    fn get(r: &mut Reader) -> Result<Self, DecodeError>;
}

impl Wire for u8 {
    fn put(&self, w: &mut Writer) {
        w.byte(*self);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        r.byte()
    }
}

impl Wire for bool {
    fn put(&self, w: &mut Writer) {
        w.byte(u8::from(*self));
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("bool", 1)? {
            0 => Ok(false),
            _ => Ok(true),
        }
    }
}

macro_rules! wire_uint {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, w: &mut Writer) {
                w.uvar(u128::from(*self));
            }
            fn get(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok(r.uvar(<$t>::BITS)? as $t)
            }
        }
    )*};
}
wire_uint!(u16, u32, u64);

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, w: &mut Writer) {
                w.ivar(i128::from(*self));
            }
            fn get(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok(r.ivar(<$t>::BITS)? as $t)
            }
        }
    )*};
}
wire_int!(i32, i64);

impl Wire for String {
    fn put(&self, w: &mut Writer) {
        w.uvar(self.len() as u128);
        w.buf.extend_from_slice(self.as_bytes());
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        let n = r.len()?;
        let at = r.pos;
        let bytes = &r.buf[at..at + n];
        r.pos += n;
        String::from_utf8(bytes.to_vec()).map_err(|_| r.invalid(at, "text is not valid UTF-8"))
    }
}

impl Wire for Arc<str> {
    fn put(&self, w: &mut Writer) {
        w.uvar(self.len() as u128);
        w.buf.extend_from_slice(self.as_bytes());
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Arc::from(String::get(r)?))
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, w: &mut Writer) {
        w.uvar(self.len() as u128);
        for x in self {
            x.put(w);
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        let n = r.len()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::get(r)?);
        }
        Ok(out)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, w: &mut Writer) {
        match self {
            None => w.byte(0),
            Some(x) => {
                w.byte(1);
                x.put(w);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.tag("option", 1)? {
            0 => Ok(None),
            _ => Ok(Some(T::get(r)?)),
        }
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, w: &mut Writer) {
        self.0.put(w);
        self.1.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((A::get(r)?, B::get(r)?))
    }
}

impl Wire for Decimal {
    fn put(&self, w: &mut Writer) {
        w.ivar(self.mantissa());
        w.byte(self.scale() as u8);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        let at = r.pos;
        let m = r.ivar(128)?;
        let scale = r.byte()?;
        Decimal::try_from_i128_with_scale(m, u32::from(scale))
            .map_err(|_| r.invalid(at, "decimal out of range"))
    }
}

impl Wire for Value {
    fn put(&self, w: &mut Writer) {
        match self {
            Value::None => w.byte(0),
            Value::Bool(b) => {
                w.byte(1);
                b.put(w);
            }
            Value::Int(i) => {
                w.byte(2);
                i.put(w);
            }
            Value::Decimal(d) => {
                w.byte(3);
                d.put(w);
            }
            Value::Money(d) => {
                w.byte(4);
                d.put(w);
            }
            Value::Percent(d) => {
                w.byte(5);
                d.put(w);
            }
            Value::Str(s) => {
                w.byte(6);
                s.put(w);
            }
            Value::Duration(s) => {
                w.byte(7);
                s.put(w);
            }
            Value::Time(t) => {
                w.byte(8);
                t.put(w);
            }
            Value::Date(d) => {
                w.byte(9);
                d.put(w);
            }
            Value::TimeOfDay(m) => {
                w.byte(10);
                m.put(w);
            }
            Value::Timezone(z) => {
                w.byte(11);
                z.put(w);
            }
            Value::List(items) => {
                w.byte(12);
                w.uvar(items.len() as u128);
                for v in items.iter() {
                    v.put(w);
                }
            }
            Value::Record(rec) => {
                w.byte(13);
                rec.schema.put(w);
                rec.fields.put(w);
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        let at = r.pos;
        Ok(match r.tag("value", 13)? {
            0 => Value::None,
            1 => Value::Bool(bool::get(r)?),
            2 => Value::Int(i64::get(r)?),
            3 => Value::Decimal(Decimal::get(r)?),
            4 => Value::Money(Decimal::get(r)?),
            5 => Value::Percent(Decimal::get(r)?),
            6 => Value::Str(Arc::get(r)?),
            7 => Value::Duration(i64::get(r)?),
            8 => Value::Time(i64::get(r)?),
            9 => Value::Date(i32::get(r)?),
            10 => {
                let m = u16::get(r)?;
                if m >= 24 * 60 {
                    return Err(r.invalid(at, "time of day past 23:59"));
                }
                Value::TimeOfDay(m)
            }
            11 => Value::Timezone(Arc::get(r)?),
            12 => {
                r.enter()?;
                let items = Vec::<Value>::get(r)?;
                r.leave();
                Value::List(Arc::from(items))
            }
            _ => {
                r.enter()?;
                let schema = u32::get(r)?;
                let fields = Vec::<Value>::get(r)?;
                r.leave();
                Value::Record(Arc::new(Record { schema, fields }))
            }
        })
    }
}

impl Wire for Type {
    fn put(&self, w: &mut Writer) {
        let simple = match self {
            Type::Bool => 0,
            Type::Int => 1,
            Type::Decimal => 2,
            Type::Money => 3,
            Type::Percent => 4,
            Type::String => 5,
            Type::Duration => 6,
            Type::Time => 7,
            Type::Date => 8,
            Type::TimeOfDay => 9,
            Type::Timezone => 10,
            Type::List(t) => {
                w.byte(11);
                return t.put(w);
            }
            Type::Record(i) => {
                w.byte(12);
                return i.put(w);
            }
            Type::Enum(i) => {
                w.byte(13);
                return i.put(w);
            }
            Type::Optional(t) => {
                w.byte(14);
                return t.put(w);
            }
        };
        w.byte(simple);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.tag("type", 14)? {
            0 => Type::Bool,
            1 => Type::Int,
            2 => Type::Decimal,
            3 => Type::Money,
            4 => Type::Percent,
            5 => Type::String,
            6 => Type::Duration,
            7 => Type::Time,
            8 => Type::Date,
            9 => Type::TimeOfDay,
            10 => Type::Timezone,
            11 => {
                r.enter()?;
                let t = Type::get(r)?;
                r.leave();
                Type::List(Box::new(t))
            }
            12 => Type::Record(u32::get(r)?),
            13 => Type::Enum(u32::get(r)?),
            _ => {
                r.enter()?;
                let t = Type::get(r)?;
                r.leave();
                Type::Optional(Box::new(t))
            }
        })
    }
}

impl Wire for Instr {
    fn put(&self, w: &mut Writer) {
        use Instr::*;
        // Operand-free instructions: one tag byte each.
        let plain: u8 = match self {
            Pop => 1,
            LoadTrigger => 4,
            LoadEvent => 5,
            LoadProfile => 6,
            IntToDec => 15,
            Not => 16,
            Neg => 17,
            Eq => 18,
            Ne => 19,
            Lt => 20,
            Le => 21,
            Gt => 22,
            Ge => 23,
            In => 24,
            AddInt => 25,
            SubInt => 26,
            MulInt => 27,
            DivInt => 28,
            RemInt => 29,
            AddDec => 30,
            SubDec => 31,
            MulDec => 32,
            DivDec => 33,
            AddMoney => 34,
            SubMoney => 35,
            MulMoney => 36,
            MulMoneyPct => 37,
            DivMoney => 38,
            DivMoneyMoney => 39,
            AddPct => 40,
            SubPct => 41,
            AddDur => 42,
            SubDur => 43,
            MulDur => 44,
            DivDur => 45,
            AddTimeDur => 46,
            SubTimeDur => 47,
            SubTime => 48,
            AddDateDur => 49,
            SubDateDur => 50,
            SubDate => 51,
            Return => 59,
            WaitUntil => 62,
            Exit => 69,
            End => 70,
            Const(n) => return tagged(w, 0, |w| n.put(w)),
            LoadLocal(n) => return tagged(w, 2, |w| n.put(w)),
            StoreLocal(n) => return tagged(w, 3, |w| n.put(w)),
            LoadProfileField(n) => return tagged(w, 7, |w| n.put(w)),
            LoadField { schema, field } => {
                return tagged(w, 8, |w| {
                    schema.put(w);
                    field.put(w)
                });
            }
            LoadFieldOpt { schema, field } => {
                return tagged(w, 9, |w| {
                    schema.put(w);
                    field.put(w)
                });
            }
            LoadLet(n) => return tagged(w, 10, |w| n.put(w)),
            EvalSegment(n) => return tagged(w, 11, |w| n.put(w)),
            MakeList(n) => return tagged(w, 12, |w| n.put(w)),
            Concat(n) => return tagged(w, 13, |w| n.put(w)),
            Call { builtin, argc } => {
                return tagged(w, 52, |w| {
                    builtin.put(w);
                    argc.put(w)
                });
            }
            CallLambda {
                builtin,
                argc,
                block,
            } => {
                return tagged(w, 53, |w| {
                    builtin.put(w);
                    argc.put(w);
                    block.put(w)
                });
            }
            CallEvent {
                builtin,
                event,
                block,
            } => {
                return tagged(w, 54, |w| {
                    builtin.put(w);
                    event.put(w);
                    block.put(w)
                });
            }
            Jump(n) => return tagged(w, 55, |w| n.put(w)),
            JumpIfFalse(n) => return tagged(w, 56, |w| n.put(w)),
            JumpIfTrue(n) => return tagged(w, 57, |w| n.put(w)),
            JumpIfNotNone(n) => return tagged(w, 58, |w| n.put(w)),
            Step(n) => return tagged(w, 60, |w| n.put(w)),
            Wait(n) => return tagged(w, 61, |w| n.put(w)),
            WaitFor(n) => return tagged(w, 63, |w| n.put(w)),
            Send { message, given } => {
                return tagged(w, 64, |w| {
                    message.put(w);
                    given.put(w)
                });
            }
            SetProfile(n) => return tagged(w, 65, |w| n.put(w)),
            AudienceAdd(n) => return tagged(w, 66, |w| n.put(w)),
            AudienceRemove(n) => return tagged(w, 67, |w| n.put(w)),
            Split(n) => return tagged(w, 68, |w| n.put(w)),
        };
        w.byte(plain);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        use Instr::*;
        Ok(match r.tag("instruction", 70)? {
            0 => Const(Wire::get(r)?),
            1 => Pop,
            2 => LoadLocal(Wire::get(r)?),
            3 => StoreLocal(Wire::get(r)?),
            4 => LoadTrigger,
            5 => LoadEvent,
            6 => LoadProfile,
            7 => LoadProfileField(Wire::get(r)?),
            8 => LoadField {
                schema: Wire::get(r)?,
                field: Wire::get(r)?,
            },
            9 => LoadFieldOpt {
                schema: Wire::get(r)?,
                field: Wire::get(r)?,
            },
            10 => LoadLet(Wire::get(r)?),
            11 => EvalSegment(Wire::get(r)?),
            12 => MakeList(Wire::get(r)?),
            13 => Concat(Wire::get(r)?),
            14 => return Err(r.invalid(r.pos - 1, "unknown instruction tag 14")),
            15 => IntToDec,
            16 => Not,
            17 => Neg,
            18 => Eq,
            19 => Ne,
            20 => Lt,
            21 => Le,
            22 => Gt,
            23 => Ge,
            24 => In,
            25 => AddInt,
            26 => SubInt,
            27 => MulInt,
            28 => DivInt,
            29 => RemInt,
            30 => AddDec,
            31 => SubDec,
            32 => MulDec,
            33 => DivDec,
            34 => AddMoney,
            35 => SubMoney,
            36 => MulMoney,
            37 => MulMoneyPct,
            38 => DivMoney,
            39 => DivMoneyMoney,
            40 => AddPct,
            41 => SubPct,
            42 => AddDur,
            43 => SubDur,
            44 => MulDur,
            45 => DivDur,
            46 => AddTimeDur,
            47 => SubTimeDur,
            48 => SubTime,
            49 => AddDateDur,
            50 => SubDateDur,
            51 => SubDate,
            52 => Call {
                builtin: Wire::get(r)?,
                argc: Wire::get(r)?,
            },
            53 => CallLambda {
                builtin: Wire::get(r)?,
                argc: Wire::get(r)?,
                block: Wire::get(r)?,
            },
            54 => CallEvent {
                builtin: Wire::get(r)?,
                event: Wire::get(r)?,
                block: Wire::get(r)?,
            },
            55 => Jump(Wire::get(r)?),
            56 => JumpIfFalse(Wire::get(r)?),
            57 => JumpIfTrue(Wire::get(r)?),
            58 => JumpIfNotNone(Wire::get(r)?),
            59 => Return,
            60 => Step(Wire::get(r)?),
            61 => Wait(Wire::get(r)?),
            62 => WaitUntil,
            63 => WaitFor(Wire::get(r)?),
            64 => Send {
                message: Wire::get(r)?,
                given: Wire::get(r)?,
            },
            65 => SetProfile(Wire::get(r)?),
            66 => AudienceAdd(Wire::get(r)?),
            67 => AudienceRemove(Wire::get(r)?),
            68 => Split(Wire::get(r)?),
            69 => Exit,
            _ => End,
        })
    }
}

fn tagged(w: &mut Writer, tag: u8, body: impl FnOnce(&mut Writer)) {
    w.byte(tag);
    body(w);
}

/// Implements [`Wire`] for a struct as its fields in the order listed.
macro_rules! wire_struct {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, w: &mut Writer) {
                $( self.$f.put(w); )*
            }
            fn get(r: &mut Reader) -> Result<Self, DecodeError> {
                Ok($t { $( $f: Wire::get(r)?, )* })
            }
        }
    };
}

/// Implements [`Wire`] for a field-less enum as a tag byte.
macro_rules! wire_tags {
    ($t:ident, $what:literal { $($v:ident = $n:literal),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, w: &mut Writer) {
                w.byte(match self { $( $t::$v => $n, )* });
            }
            fn get(r: &mut Reader) -> Result<Self, DecodeError> {
                let at = r.pos;
                match r.byte()? {
                    $( $n => Ok($t::$v), )*
                    t => Err(r.invalid(at, format!(concat!("unknown ", $what, " tag {}"), t))),
                }
            }
        }
    };
}

wire_tags!(SchemaKind, "schema kind" { Event = 0, Record = 1, Profile = 2, Shared = 3 });
wire_tags!(BlockKind, "block kind" { Steps = 0, Expr = 1, Lambda = 2 });
wire_tags!(Channel, "channel" { Email = 0, Sms = 1, Push = 2, Webhook = 3, Audience = 4 });
wire_tags!(Purpose, "purpose" { Marketing = 0, Transactional = 1 });
wire_tags!(CapAction, "cap action" { Skip = 0, Defer = 1 });

wire_struct!(Schema {
    name,
    kind,
    wire,
    fields
});
wire_struct!(FieldSchema { name, ty, default });
wire_struct!(EnumSchema { name, values });
wire_struct!(Global { name, ty, unit });
wire_struct!(ChangePoints { segment, unit });
wire_struct!(Unit {
    consts,
    blocks,
    slots
});
wire_struct!(Block {
    kind,
    params,
    code,
    pos
});
wire_struct!(Pos {
    file,
    line,
    col,
    start,
    end
});
wire_struct!(Message {
    name,
    channel,
    purpose,
    params,
    content,
    unit
});
wire_struct!(Param { name, ty, default });
wire_struct!(Content { key, value });
wire_struct!(Template { path, source, lets });
impl Flow {
    /// Writes the flow; without `names`, [`Flow::local_names`] is left out
    /// entirely (version hashes do not cover it: see `Bundle::flow_version`).
    fn put_fields(&self, w: &mut Writer, names: bool) {
        self.name.put(w);
        self.version.put(w);
        self.trigger.put(w);
        self.entry.put(w);
        self.exit_on.put(w);
        self.exit_if.put(w);
        self.suppress.put(w);
        self.quiet.put(w);
        self.caps.put(w);
        self.goal.put(w);
        self.holdout.put(w);
        self.priority.put(w);
        self.on_exit.put(w);
        self.locals.put(w);
        if names {
            self.local_names.put(w);
        }
        self.waits.put(w);
        if names {
            self.splits.put(w);
        } else {
            // A plain split hashes as it did before splits could optimise,
            // so that the versions of flows with plain splits stay the same.
            w.uvar(self.splits.len() as u128);
            for s in &self.splits {
                s.arms.put(w);
                if let Some(floor) = s.optimise {
                    w.byte(0xff);
                    floor.put(w);
                }
            }
        }
        self.steps.put(w);
        self.unit.put(w);
    }
}

impl Wire for Flow {
    fn put(&self, w: &mut Writer) {
        self.put_fields(w, true);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Flow {
            name: Wire::get(r)?,
            version: Wire::get(r)?,
            trigger: Wire::get(r)?,
            entry: Wire::get(r)?,
            exit_on: Wire::get(r)?,
            exit_if: Wire::get(r)?,
            suppress: Wire::get(r)?,
            quiet: Wire::get(r)?,
            caps: Wire::get(r)?,
            goal: Wire::get(r)?,
            holdout: Wire::get(r)?,
            priority: Wire::get(r)?,
            on_exit: Wire::get(r)?,
            locals: Wire::get(r)?,
            local_names: Wire::get(r)?,
            waits: Wire::get(r)?,
            splits: Wire::get(r)?,
            steps: Wire::get(r)?,
            unit: Wire::get(r)?,
        })
    }
}
wire_struct!(LocalName { name, step });
wire_struct!(EventRule { event, predicate });
wire_struct!(QuietHours { channel, from, to });
wire_struct!(Cap {
    scope,
    count,
    per,
    then
});
wire_struct!(Goal { rule, within });
wire_struct!(WaitFor {
    events,
    schema,
    predicate,
    within,
    bind
});
wire_struct!(WaitEvent { event, project });
impl Wire for Split {
    fn put(&self, w: &mut Writer) {
        self.arms.put(w);
        self.optimise.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        let arms = Wire::get(r)?;
        // Before version 6 every split was a plain one.
        let optimise = if r.version >= 7 { Wire::get(r)? } else { None };
        Ok(Split { arms, optimise })
    }
}
wire_struct!(SplitArm {
    percent,
    name,
    target
});
wire_struct!(StepInfo {
    label,
    what,
    block,
    pc
});
impl Wire for Policy {
    fn put(&self, w: &mut Writer) {
        self.timezone.put(w);
        self.quiet.put(w);
        self.caps.put(w);
        self.suppress_lists.put(w);
        self.currency.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Policy::get_version(r, FORMAT_VERSION)
    }
}

impl Policy {
    /// Reads a policy written in format `version` (4 added `currency`).
    fn get_version(r: &mut Reader, version: u16) -> Result<Self, DecodeError> {
        Ok(Policy {
            timezone: Wire::get(r)?,
            quiet: Wire::get(r)?,
            caps: Wire::get(r)?,
            suppress_lists: Wire::get(r)?,
            currency: if version >= 4 { Wire::get(r)? } else { None },
        })
    }
}
impl Wire for Readers {
    fn put(&self, w: &mut Writer) {
        self.forever.put(w);
        self.instances.put(w);
        self.goals.put(w);
        self.within.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Readers::get_version(r, FORMAT_VERSION)
    }
}

impl Readers {
    /// Reads readers written in format `version` (6 added `within`; before
    /// it, a windowed read by a segment or `let` was declared `forever`,
    /// which still covers it).
    fn get_version(r: &mut Reader, version: u16) -> Result<Self, DecodeError> {
        Ok(Readers {
            forever: Wire::get(r)?,
            instances: Wire::get(r)?,
            goals: Wire::get(r)?,
            within: if version >= 6 { Wire::get(r)? } else { 0 },
        })
    }
}

impl Wire for Retention {
    fn put(&self, w: &mut Writer) {
        self.events.put(w);
        self.sends.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Retention::get_version(r, FORMAT_VERSION)
    }
}

impl Retention {
    /// Reads a retention written in format `version` (3 or later).
    fn get_version(r: &mut Reader, version: u16) -> Result<Self, DecodeError> {
        let n = r.len()?;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(Readers::get_version(r, version)?);
        }
        Ok(Retention {
            events,
            sends: Wire::get(r)?,
        })
    }
}

impl Wire for Bundle {
    fn put(&self, w: &mut Writer) {
        self.files.put(w);
        self.builtins.put(w);
        self.schemas.put(w);
        self.enums.put(w);
        self.profile.put(w);
        self.lets.put(w);
        self.segments.put(w);
        self.messages.put(w);
        self.flows.put(w);
        self.policy.put(w);
        self.retention.put(w);
        self.change_points.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Bundle::get_version(r, FORMAT_VERSION)
    }
}

impl Bundle {
    /// Reads a bundle body written in format `version`.
    fn get_version(r: &mut Reader, version: u16) -> Result<Self, DecodeError> {
        let mut b = Bundle {
            files: Wire::get(r)?,
            builtins: Wire::get(r)?,
            schemas: Wire::get(r)?,
            enums: Wire::get(r)?,
            profile: Wire::get(r)?,
            lets: Wire::get(r)?,
            segments: Wire::get(r)?,
            messages: Wire::get(r)?,
            flows: Wire::get(r)?,
            policy: Policy::get_version(r, version)?,
            retention: Retention::default(),
            change_points: Vec::new(),
        };
        b.retention = if version >= 3 {
            Retention::get_version(r, version)?
        } else {
            Retention::derive(&b)
        };
        if version >= 5 {
            b.change_points = Wire::get(r)?;
        }
        Ok(b)
    }
}

impl Wire for ContentValue {
    fn put(&self, w: &mut Writer) {
        match self {
            ContentValue::Code(b) => tagged(w, 0, |w| b.put(w)),
            ContentValue::Template(t) => tagged(w, 1, |w| t.put(w)),
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.tag("content", 1)? {
            0 => ContentValue::Code(Wire::get(r)?),
            _ => ContentValue::Template(Wire::get(r)?),
        })
    }
}

impl Wire for CapScope {
    fn put(&self, w: &mut Writer) {
        match self {
            CapScope::Marketing => w.byte(0),
            CapScope::Channel(c) => tagged(w, 1, |w| c.put(w)),
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.tag("cap scope", 1)? {
            0 => CapScope::Marketing,
            _ => CapScope::Channel(Wire::get(r)?),
        })
    }
}

impl Wire for Entry {
    fn put(&self, w: &mut Writer) {
        match self {
            Entry::Single => w.byte(0),
            Entry::Once => w.byte(1),
            Entry::OncePer(d) => tagged(w, 2, |w| d.put(w)),
            Entry::Always => w.byte(3),
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.tag("entry", 3)? {
            0 => Entry::Single,
            1 => Entry::Once,
            2 => Entry::OncePer(Wire::get(r)?),
            _ => Entry::Always,
        })
    }
}

impl Wire for Cadence {
    fn put(&self, w: &mut Writer) {
        match self {
            Cadence::Day => w.byte(0),
            Cadence::Weekday(d) => tagged(w, 1, |w| d.put(w)),
            Cadence::Month(d) => tagged(w, 2, |w| d.put(w)),
            Cadence::Once(d) => tagged(w, 3, |w| d.put(w)),
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.tag("cadence", 3)? {
            0 => Cadence::Day,
            1 => Cadence::Weekday(Wire::get(r)?),
            2 => Cadence::Month(Wire::get(r)?),
            _ => Cadence::Once(Wire::get(r)?),
        })
    }
}

impl Wire for Trigger {
    fn put(&self, w: &mut Writer) {
        match self {
            Trigger::Event(rule) => tagged(w, 0, |w| rule.put(w)),
            Trigger::Schedule {
                cadence,
                at,
                local,
                segment,
            } => tagged(w, 1, |w| {
                cadence.put(w);
                at.put(w);
                local.put(w);
                segment.put(w)
            }),
            // The plain form keeps its encoding (and so its flows' versions);
            // the others, added in format 4, have a tag of their own.
            Trigger::DateProperty {
                offset,
                field,
                yearly: false,
                at: None,
                grace: None,
            } => tagged(w, 2, |w| {
                offset.put(w);
                field.put(w)
            }),
            Trigger::DateProperty {
                offset,
                field,
                yearly,
                at,
                grace,
            } => tagged(w, 4, |w| {
                offset.put(w);
                field.put(w);
                yearly.put(w);
                at.put(w);
                grace.put(w)
            }),
            Trigger::Entering { segment } => tagged(w, 3, |w| segment.put(w)),
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(match r.tag("trigger", 4)? {
            0 => Trigger::Event(Wire::get(r)?),
            1 => Trigger::Schedule {
                cadence: Wire::get(r)?,
                at: Wire::get(r)?,
                local: Wire::get(r)?,
                segment: Wire::get(r)?,
            },
            2 => Trigger::DateProperty {
                offset: Wire::get(r)?,
                field: Wire::get(r)?,
                yearly: false,
                at: None,
                grace: None,
            },
            3 => Trigger::Entering {
                segment: Wire::get(r)?,
            },
            _ => {
                let at = r.pos;
                let t = Trigger::DateProperty {
                    offset: Wire::get(r)?,
                    field: Wire::get(r)?,
                    yearly: Wire::get(r)?,
                    at: Wire::get(r)?,
                    grace: Wire::get(r)?,
                };
                // Each trigger has one encoding: the plain form has tag 2.
                if let Trigger::DateProperty {
                    yearly: false,
                    at: None,
                    grace: None,
                    ..
                } = t
                {
                    return Err(r.invalid(at, "a plain date trigger in the long form"));
                }
                t
            }
        })
    }
}

/// Encodes any encodable part of a bundle on its own (used for version hashes).
pub(crate) fn encode_part<T: Wire>(x: &T) -> Vec<u8> {
    let mut w = Writer::default();
    x.put(&mut w);
    w.buf
}

/// Encodes a flow for its version hash: as in the bundle, less its local names.
pub(crate) fn encode_flow_for_hash(flow: &Flow) -> Vec<u8> {
    let mut w = Writer::default();
    flow.put_fields(&mut w, false);
    w.buf
}

impl Bundle {
    /// The bundle as bytes: magic, format version, body. The same bundle
    /// always gives the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&MAGIC);
        w.buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        self.put(&mut w);
        w.buf
    }

    /// Reads a bundle written by [`Bundle::encode`], checking its magic, its
    /// format version, its structure and that every index it holds is in range.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, DecodeError> {
        let n = MAGIC.len();
        if bytes.len() < n || bytes[..n] != MAGIC {
            // A prefix of the magic is a truncated bundle, anything else is not one.
            if bytes.len() < n && MAGIC.starts_with(bytes) {
                return Err(DecodeError::Truncated { at: bytes.len() });
            }
            return Err(DecodeError::BadMagic);
        }
        let Some(v) = bytes.get(n..n + 2) else {
            return Err(DecodeError::Truncated { at: bytes.len() });
        };
        let found = u16::from_le_bytes([v[0], v[1]]);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&found) {
            return Err(DecodeError::UnsupportedVersion {
                found,
                supported: FORMAT_VERSION,
            });
        }
        let mut r = Reader::new(bytes, n + 2);
        r.version = found;
        let bundle = Bundle::get_version(&mut r, found)?;
        if r.pos() != bytes.len() {
            return Err(DecodeError::Invalid {
                at: r.pos(),
                what: format!(
                    "{} unexpected bytes after the bundle",
                    bytes.len() - r.pos()
                ),
            });
        }
        bundle.validate().map_err(DecodeError::Inconsistent)?;
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_tag_round_trips() {
        let mut decoded = 0;
        for tag in 0..=255u8 {
            // A tag followed by small operands; `1` also reads as `Some`.
            let bytes = [tag, 1, 1, 1, 1, 1, 1];
            let mut r = Reader::new(&bytes, 0);
            let Ok(instr) = Instr::get(&mut r) else {
                assert!(tag == 14 || tag > 70, "tag {tag} does not decode");
                continue;
            };
            decoded += 1;
            let mut w = Writer::default();
            instr.put(&mut w);
            assert_eq!(w.buf, bytes[..r.pos()], "{instr:?}");
        }
        assert_eq!(decoded, 70);
    }

    #[test]
    fn splits_before_format_6_read_as_plain_and_optimise_is_written_from_6() {
        let arms = vec![
            SplitArm {
                percent: Decimal::new(50, 0),
                name: "a".into(),
                target: 3,
            },
            SplitArm {
                percent: Decimal::new(50, 0),
                name: "b".into(),
                target: 7,
            },
        ];
        // Format 5 wrote a split as its arms alone.
        let mut old = Writer::default();
        arms.put(&mut old);
        old.byte(9); // what follows the split
        let mut r = Reader::new(&old.buf, 0);
        r.version = 5;
        let plain = Split::get(&mut r).unwrap();
        assert_eq!(plain.arms, arms);
        assert_eq!(plain.optimise, None);
        assert_eq!(r.byte().unwrap(), 9, "nothing more was read");
        // Format 6 writes `optimise` after the arms.
        let tuned = Split {
            arms: arms.clone(),
            optimise: Some(Decimal::new(10, 0)),
        };
        let mut w = Writer::default();
        tuned.put(&mut w);
        let mut r = Reader::new(&w.buf, 0);
        assert_eq!(Split::get(&mut r).unwrap(), tuned);
        assert_eq!(r.pos(), w.buf.len());
        // The same bytes read as format 5 leave the floor unread.
        let mut r = Reader::new(&w.buf, 0);
        r.version = 5;
        assert_eq!(Split::get(&mut r).unwrap().optimise, None);
        assert!(r.pos() < w.buf.len());
    }
}
