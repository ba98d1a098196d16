//! Encoding and decoding bundles: round trips, determinism, and clear
//! errors (never a panic) for bytes that are not a bundle.

use std::sync::Arc;

use nudge_bytecode::*;
use proptest::prelude::*;
use rust_decimal::Decimal;

fn pos(line: u32) -> Pos {
    Pos {
        file: 0,
        line,
        col: 3,
        start: 10,
        end: 20,
    }
}

fn block(kind: BlockKind, code: Vec<Instr>) -> Block {
    let pos = (1..=code.len() as u32).map(pos).collect();
    Block {
        kind,
        params: Vec::new(),
        code,
        pos,
    }
}

/// A small bundle using every kind of value and most instructions.
fn sample() -> Bundle {
    let profile = Schema {
        name: "profile".into(),
        kind: SchemaKind::Profile,
        wire: None,
        fields: vec![
            FieldSchema {
                name: "email".into(),
                ty: Type::Optional(Box::new(Type::String)),
                default: None,
            },
            FieldSchema {
                name: "total_spent".into(),
                ty: Type::Money,
                default: Some(Value::Money(Decimal::new(0, 2))),
            },
        ],
    };
    let event = Schema {
        name: "signed_up".into(),
        kind: SchemaKind::Event,
        wire: Some("Signed Up".into()),
        fields: vec![FieldSchema {
            name: "tags".into(),
            ty: Type::List(Box::new(Type::Enum(0))),
            default: Some(Value::List(Arc::from(vec![Value::str("a")]))),
        }],
    };
    let consts = vec![
        Value::None,
        Value::Bool(true),
        Value::Int(-42),
        Value::Decimal(Decimal::new(125, 1)),
        Value::Money(Decimal::new(5000, 2)),
        Value::Percent(Decimal::new(125, 1)),
        Value::str("héllo"),
        Value::Duration(90 * 60),
        Value::Time(1_797_613_200),
        Value::Date(20_811),
        Value::TimeOfDay(21 * 60),
        Value::Timezone(Arc::from("Europe/Berlin")),
        Value::Record(Arc::new(Record {
            schema: 1,
            fields: vec![Value::List(Arc::from(vec![]))],
        })),
    ];
    let steps = block(
        BlockKind::Steps,
        vec![
            Instr::Step(0),
            Instr::Wait(3600),
            Instr::Step(1),
            Instr::LoadProfileField(1),
            Instr::Const(4),
            Instr::Ge,
            Instr::JumpIfFalse(9),
            Instr::Send {
                message: 0,
                given: 0,
            },
            Instr::Exit,
            Instr::End,
        ],
    );
    let pred = block(
        BlockKind::Expr,
        vec![
            Instr::LoadEvent,
            Instr::LoadField {
                schema: 1,
                field: 0,
            },
            Instr::CallLambda {
                builtin: 0,
                argc: 1,
                block: 2,
            },
            Instr::Return,
        ],
    );
    let mut lambda = block(
        BlockKind::Lambda,
        vec![
            Instr::LoadLocal(1),
            Instr::Const(6),
            Instr::Eq,
            Instr::Return,
        ],
    );
    lambda.params = vec![1];
    let flow = Flow {
        name: "welcome".into(),
        version: String::new(),
        trigger: Trigger::Event(EventRule {
            event: 1,
            predicate: Some(1),
        }),
        entry: Entry::OncePer(7 * 86_400),
        exit_on: vec![EventRule {
            event: 1,
            predicate: None,
        }],
        exit_if: vec![],
        suppress: vec![],
        quiet: vec![QuietHours {
            channel: Some(Channel::Sms),
            from: 21 * 60,
            to: 8 * 60,
        }],
        caps: vec![Cap {
            scope: CapScope::Marketing,
            count: 3,
            per: 7 * 86_400,
            then: CapAction::Defer,
        }],
        goal: None,
        holdout: Some(Decimal::new(10, 0)),
        priority: -3,
        on_exit: None,
        locals: 1,
        local_names: vec![LocalName {
            name: "seen".into(),
            step: 1,
        }],
        waits: vec![],
        splits: vec![],
        steps: vec![
            StepInfo {
                label: Some("first".into()),
                what: "wait 1h".into(),
                block: 0,
                pc: 0,
            },
            StepInfo {
                label: None,
                what: "if".into(),
                block: 0,
                pc: 2,
            },
        ],
        unit: Unit {
            consts,
            blocks: vec![steps, pred, lambda],
            slots: 2,
        },
    };
    let message = Message {
        name: "hello".into(),
        channel: Channel::Email,
        purpose: Purpose::Marketing,
        params: vec![],
        content: vec![
            Content {
                key: "subject".into(),
                value: ContentValue::Code(0),
            },
            Content {
                key: "body".into(),
                value: ContentValue::Template(Template {
                    path: "t.html".into(),
                    source: "Hi {{ profile.email }}".into(),
                    lets: vec![],
                }),
            },
        ],
        unit: Unit {
            consts: vec![Value::str("Hi")],
            blocks: vec![block(BlockKind::Expr, vec![Instr::Const(0), Instr::Return])],
            slots: 0,
        },
    };
    let mut b = Bundle {
        files: vec!["shop.flow".into()],
        builtins: vec!["any".into()],
        schemas: vec![profile, event],
        enums: vec![EnumSchema {
            name: "Tag".into(),
            values: vec!["a".into(), "b".into()],
        }],
        profile: 0,
        lets: vec![],
        segments: vec![Global {
            name: "recent".into(),
            ty: Type::Bool,
            unit: Unit {
                consts: vec![Value::Bool(true)],
                blocks: vec![block(BlockKind::Expr, vec![Instr::Const(0), Instr::Return])],
                slots: 0,
            },
        }],
        messages: vec![message],
        flows: vec![flow],
        policy: Policy {
            timezone: Some("America/New_York".into()),
            quiet: vec![],
            caps: vec![],
            suppress_lists: vec!["lists/optout.txt".into()],
            currency: Some("EUR".into()),
        },
        retention: Retention::default(),
        change_points: vec![ChangePoints {
            segment: 0,
            unit: Unit {
                consts: vec![Value::Time(1_767_225_600)],
                blocks: vec![block(BlockKind::Expr, vec![Instr::Const(0), Instr::Return])],
                slots: 0,
            },
        }],
    };
    b.compute_versions();
    b.retention = Retention::derive(&b);
    b
}

#[test]
fn a_bundle_round_trips_byte_for_byte() {
    let b = sample();
    b.validate().expect("the sample is consistent");
    let bytes = b.encode();
    assert_eq!(&bytes[..6], b"NUDGE\0");
    assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]), FORMAT_VERSION);
    let back = Bundle::decode(&bytes).expect("decodes");
    assert_eq!(back, b);
    assert_eq!(back.encode(), bytes);
    assert_eq!(b.encode(), bytes, "encoding is deterministic");
}

#[test]
fn versions_are_sixteen_hex_digits_and_ignore_positions() {
    let b = sample();
    let v = &b.flows[0].version;
    assert_eq!(v.len(), 16);
    assert!(v.chars().all(|c| c.is_ascii_hexdigit()));
    let mut moved = b.clone();
    for blk in &mut moved.flows[0].unit.blocks {
        for p in &mut blk.pos {
            p.line += 10;
        }
    }
    moved.files[0] = "elsewhere/shop.flow".into();
    assert_eq!(moved.flow_version(0).as_ref(), Some(v));
    let mut changed = b.clone();
    changed.flows[0].unit.blocks[0].code[1] = Instr::Wait(7200);
    assert_ne!(changed.flow_version(0).as_ref(), Some(v));
    // A message the flow sends is part of its version.
    let mut msg = b.clone();
    msg.messages[0].unit.consts[0] = Value::str("Hello");
    assert_ne!(msg.flow_version(0).as_ref(), Some(v));
    // Renaming a local leaves the code as it was, and so the version.
    let mut renamed = b.clone();
    renamed.flows[0].local_names[0].name = "looked".into();
    assert_eq!(renamed.flow_version(0).as_ref(), Some(v));
    assert_ne!(
        renamed.encode(),
        b.encode(),
        "the name is still in the bundle"
    );
}

#[test]
fn local_names_round_trip_and_must_match_the_locals() {
    let b = sample();
    let back = Bundle::decode(&b.encode()).expect("decodes");
    assert_eq!(
        back.flows[0].local_names,
        vec![LocalName {
            name: "seen".into(),
            step: 1
        }]
    );

    let mut missing = sample();
    missing.flows[0].local_names.clear();
    let err = Bundle::decode(&missing.encode()).unwrap_err();
    assert!(
        err.to_string()
            .contains("0 local names for 1 persistent locals"),
        "{err}"
    );

    let mut stray = sample();
    stray.flows[0].local_names[0].step = 9;
    let err = Bundle::decode(&stray.encode()).unwrap_err();
    assert!(
        err.to_string().contains("declaring step 9 out of range"),
        "{err}"
    );
}

#[test]
fn wrong_magic_is_refused() {
    let mut bytes = sample().encode();
    bytes[0] = b'X';
    assert_eq!(Bundle::decode(&bytes), Err(DecodeError::BadMagic));
    assert_eq!(
        Bundle::decode(b"{\"not\": \"a bundle\"}")
            .unwrap_err()
            .to_string(),
        "not a Nudge bundle (bad magic number)"
    );
    assert_eq!(Bundle::decode(b""), Err(DecodeError::Truncated { at: 0 }));
}

#[test]
fn a_newer_format_version_is_refused() {
    let mut bytes = sample().encode();
    bytes[6..8].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let err = Bundle::decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnsupportedVersion {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        }
    );
    assert!(
        err.to_string()
            .contains("unsupported bundle format version 8 (this nudge reads versions 2 to 7)"),
        "{err}"
    );
    // Format 1 had no local names: its flows cannot be read as format 2.
    let mut bytes = sample().encode();
    bytes[6..8].copy_from_slice(&1u16.to_le_bytes());
    assert!(matches!(
        Bundle::decode(&bytes),
        Err(DecodeError::UnsupportedVersion {
            found: 1,
            supported: FORMAT_VERSION
        })
    ));
}

#[test]
fn truncation_names_the_byte() {
    let bytes = sample().encode();
    for n in 0..bytes.len() {
        match Bundle::decode(&bytes[..n]) {
            Err(DecodeError::Truncated { at }) => assert!(at <= n, "{at} > {n}"),
            Err(DecodeError::Invalid { .. }) => {}
            other => panic!("prefix of {n} bytes: {other:?}"),
        }
    }
    let err = Bundle::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the bundle is truncated at byte {}", bytes.len() - 1)
    );
}

#[test]
fn trailing_bytes_and_bad_references_are_refused() {
    let mut bytes = sample().encode();
    bytes.push(0);
    let err = Bundle::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("1 unexpected bytes"), "{err}");

    let mut b = sample();
    b.flows[0].unit.blocks[0].code[4] = Instr::Const(99);
    let err = Bundle::decode(&b.encode()).unwrap_err();
    assert!(matches!(err, DecodeError::Inconsistent(_)), "{err}");
    assert!(
        err.to_string().contains("constant 99 out of range"),
        "{err}"
    );

    let mut b = sample();
    b.change_points[0].segment = 1;
    let err = Bundle::decode(&b.encode()).unwrap_err();
    assert!(
        err.to_string()
            .contains("change points of segment 1 are out of place"),
        "{err}"
    );

    let mut b = sample();
    b.flows[0].unit.blocks[1].code.insert(0, Instr::Wait(1));
    b.flows[0].unit.blocks[1].pos.insert(0, pos(1));
    let err = Bundle::decode(&b.encode()).unwrap_err();
    assert!(err.to_string().contains("outside a flow's steps"), "{err}");
}

#[test]
fn a_bundle_calling_an_unknown_builtin_is_refused_with_its_name() {
    let mut b = sample();
    b.builtins.push("escape:html".into());
    assert!(Bundle::decode(&b.encode()).is_ok(), "escapes are known");
    b.builtins.push("shuffle".into());
    let err = Bundle::decode(&b.encode()).unwrap_err();
    assert!(matches!(err, DecodeError::Inconsistent(_)), "{err}");
    assert!(err.to_string().contains("calls builtin `shuffle`"), "{err}");
}

#[test]
fn deeply_nested_values_are_refused() {
    // A value nested deeper than any program writes is refused by the
    // decoder rather than risking its stack.
    let mut deep = Value::Int(1);
    for _ in 0..100 {
        deep = Value::List(Arc::from(vec![deep]));
    }
    let mut b = sample();
    b.flows[0].unit.consts.push(deep);
    let err = Bundle::decode(&b.encode()).unwrap_err();
    assert!(err.to_string().contains("nested too deeply"), "{err}");
}

#[test]
fn overlong_integers_are_refused() {
    // The encoding is canonical: a padded varint would decode to a bundle
    // that encodes to other bytes, so it is refused.
    let mut bytes = b"NUDGE\0".to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0x80, 0x00]);
    let err = Bundle::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("overlong"), "{err}");
}

#[test]
fn values_show_as_the_language_writes_them() {
    assert_eq!(Value::Money(Decimal::new(125, 1)).to_text(), "$12.50");
    assert_eq!(Value::Money(Decimal::new(-3, 0)).to_text(), "-$3.00");
    assert_eq!(Value::Money(Decimal::new(5000, 2)).to_string(), "$50.00");
    assert_eq!(Value::Duration(90 * 60).to_string(), "1h 30m");
    assert_eq!(
        Value::Time(1_797_613_200).to_string(),
        "2026-12-18T17:00:00Z"
    );
    assert_eq!(Value::Date(20_811).to_string(), "2026-12-24");
    assert_eq!(Value::Date(-1).to_string(), "1969-12-31");
    assert_eq!(Value::TimeOfDay(9 * 60 + 5).to_string(), "09:05");
    assert_eq!(Value::Percent(Decimal::new(125, 1)).to_string(), "12.5%");
    assert_eq!(Value::None.to_text(), "");
    assert_eq!(Value::str("a\"b").to_string(), "\"a\\\"b\"");
    assert_eq!(Value::str("a\"b").to_text(), "a\"b");
    let list = Value::List(Arc::from(vec![Value::Int(1), Value::str("x")]));
    assert_eq!(list.to_text(), "1, x");
}

#[test]
fn the_listing_annotates_instructions_with_source_lines() {
    let text = "line one\nline two\nline three\n";
    let listing = disassemble(&sample(), &|p| (p == "shop.flow").then(|| text.to_string()));
    assert!(listing.starts_with("nudge bundle, format 7\n"), "{listing}");
    assert!(
        listing.contains("\nchanges of segment recent\n"),
        "{listing}"
    );
    assert!(listing.contains("step 0 first: wait 1h"), "{listing}");
    assert!(
        listing.contains("  local 0: seen from step 1\n"),
        "{listing}"
    );
    assert!(listing.contains("; shop.flow:2  line two"), "{listing}");
    assert!(
        listing.contains("cap marketing 3 per 7d then defer"),
        "{listing}"
    );
    assert!(listing.contains("  currency \"EUR\"\n"), "{listing}");
    let bare = disassemble(&sample(), &|_| None);
    assert!(bare.contains("; shop.flow:2\n"), "{bare}");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Bundle::decode(&bytes);
        let mut framed = b"NUDGE\0".to_vec();
        framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        framed.extend_from_slice(&bytes);
        let _ = Bundle::decode(&framed);
    }

    #[test]
    fn damaged_bundles_never_panic(at in 8usize..4096, byte in any::<u8>()) {
        let mut bytes = sample().encode();
        let i = at % bytes.len();
        bytes[i] = byte;
        if let Ok(b) = Bundle::decode(&bytes) {
            // Whatever decodes is consistent and encodes back the same.
            prop_assert_eq!(b.encode(), bytes);
        }
    }
}

#[test]
fn instructions_stay_small() {
    // The runtime's dispatch loop reads instructions from a slice: keep
    // each one within two machine words.
    assert!(std::mem::size_of::<Instr>() <= 16);
}

#[test]
fn every_instruction_is_documented() {
    use Instr::*;
    let all = [
        Const(0),
        Pop,
        LoadLocal(0),
        StoreLocal(0),
        LoadTrigger,
        LoadEvent,
        LoadProfile,
        LoadProfileField(0),
        LoadField {
            schema: 0,
            field: 0,
        },
        LoadFieldOpt {
            schema: 0,
            field: 0,
        },
        LoadLet(0),
        EvalSegment(0),
        MakeList(0),
        Concat(0),
        IntToDec,
        Not,
        Neg,
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge,
        In,
        AddInt,
        SubInt,
        MulInt,
        DivInt,
        RemInt,
        AddDec,
        SubDec,
        MulDec,
        DivDec,
        AddMoney,
        SubMoney,
        MulMoney,
        MulMoneyPct,
        DivMoney,
        DivMoneyMoney,
        AddPct,
        SubPct,
        AddDur,
        SubDur,
        MulDur,
        DivDur,
        AddTimeDur,
        SubTimeDur,
        SubTime,
        AddDateDur,
        SubDateDur,
        SubDate,
        Call {
            builtin: 0,
            argc: 0,
        },
        CallLambda {
            builtin: 0,
            argc: 0,
            block: 0,
        },
        CallEvent {
            builtin: 0,
            event: 0,
            block: None,
        },
        Jump(0),
        JumpIfFalse(0),
        JumpIfTrue(0),
        JumpIfNotNone(0),
        Return,
        Step(0),
        Wait(0),
        WaitUntil,
        WaitFor(0),
        Send {
            message: 0,
            given: 0,
        },
        SetProfile(0),
        AudienceAdd(0),
        AudienceRemove(0),
        Split(0),
        Exit,
        End,
    ];
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/bytecode.md"
    ))
    .expect("docs/bytecode.md is readable");
    let mut tags = std::collections::BTreeSet::new();
    for i in &all {
        let m = i.mnemonic();
        assert!(
            doc.contains(&format!("`{m}`")),
            "`{m}` is not in docs/bytecode.md"
        );
        tags.insert(m);
    }
    assert_eq!(tags.len(), all.len(), "mnemonics are distinct");
}

#[test]
fn splits_that_optimise_round_trip_list_and_change_the_version() {
    let with = |optimise: Option<Decimal>| {
        let mut b = sample();
        let percent = if optimise.is_some() {
            Decimal::ZERO
        } else {
            Decimal::new(50, 0)
        };
        b.flows[0].splits = vec![Split {
            arms: vec![
                SplitArm {
                    percent,
                    name: "a".into(),
                    target: 0,
                },
                SplitArm {
                    percent,
                    name: "b".into(),
                    target: 1,
                },
            ],
            optimise,
        }];
        b.compute_versions();
        b
    };
    let plain = with(None);
    let tuned = with(Some(Decimal::new(125, 1)));
    for b in [&plain, &tuned] {
        let bytes = b.encode();
        let back = Bundle::decode(&bytes).unwrap();
        assert_eq!(&back, b);
        assert_eq!(back.encode(), bytes);
    }
    assert_ne!(plain.flows[0].version, tuned.flows[0].version);
    let listing = disassemble(&tuned, &|_| None);
    assert!(
        listing.contains("split #0: optimise floor 12.5%: a -> 0000, b -> 0001"),
        "{listing}"
    );
    let listing = disassemble(&plain, &|_| None);
    assert!(
        listing.contains("split #0: 50% a -> 0000, 50% b -> 0001"),
        "{listing}"
    );
}

#[test]
fn date_triggers_round_trip_and_the_plain_form_keeps_its_encoding() {
    let with = |trigger: Trigger| {
        let mut b = sample();
        b.flows[0].trigger = trigger;
        b.compute_versions();
        b
    };
    let plain = with(Trigger::DateProperty {
        offset: -3 * 86_400,
        field: 0,
        yearly: false,
        at: None,
        grace: None,
    });
    let yearly = with(Trigger::DateProperty {
        offset: -3 * 86_400,
        field: 0,
        yearly: true,
        at: Some(9 * 60),
        grace: Some(86_400),
    });
    for b in [&plain, &yearly] {
        let bytes = b.encode();
        let back = Bundle::decode(&bytes).unwrap();
        assert_eq!(&back, b);
        assert_eq!(back.encode(), bytes);
    }
    // The long form costs its three fields (yearly 1 byte, at 1 + 2, grace
    // 1 + 3) and the plain one nothing: a flow with a plain date trigger
    // keeps its encoding, and so its version, across format 4.
    assert_eq!(yearly.encode().len(), plain.encode().len() + 1 + 3 + 4);
    assert_ne!(plain.flows[0].version, yearly.flows[0].version);
    let listing = disassemble(&yearly, &|_| None);
    assert!(
        listing.contains("3d before profile.email every year at 09:00 grace 1d"),
        "{listing}"
    );
}
