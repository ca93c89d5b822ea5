//! The JSON lines against their contract, `docs/socktrace.schema.json`:
//! a line of every type the writers have, rendered by the writers from a
//! real recording (`fixtures/`) and from records built to take each
//! branch that writes `null`, must validate; the schema names no type
//! that is not rendered here, and refuses what the contract rules out.
use std::{collections::BTreeSet, io::BufReader};

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use super::{
    Json, ListenersView, Palette, Render, SCHEMA_VERSION, StuckView, TimewaitView, lifecycles,
    summary_line,
};
use crate::{
    analysis::{
        lifecycles::Lifecycles,
        listeners::Listeners,
        stuck::Stuck,
        timewait::{Feed, Host, Key, Role, Settings, Timewait},
    },
    clock::{self, Clock},
    event::TcpState,
    input::{Header, Reader},
    summary::Summary,
    track::{Close, Known, Record},
};

const SCHEMA: &str = include_str!("../../../docs/socktrace.schema.json");
const RECORDING: &str = include_str!("../../fixtures/listeners-and-churn.jsonl");
const MS: u64 = 1_000_000;

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema())
        .expect("a valid draft 2020-12 schema")
}

/// The fixture's records (its own lines predate the schema's version).
fn recorded() -> Vec<Record> {
    Reader::new(BufReader::new(RECORDING.as_bytes()))
        .map(|r| r.expect("a valid line"))
        .collect()
}

/// Records that take the writers' other branches: unknown owners,
/// namespaces and socket ids, failures, every optional field.
fn built() -> Vec<Record> {
    let mut records = crate::input::tests::every_kind();
    let unknown_netns: Vec<Record> = records
        .iter()
        .filter_map(|r| match r {
            Record::Existing(k, at) => Some(Record::Existing(
                Known {
                    netns: 0,
                    ..k.clone()
                },
                *at,
            )),
            Record::Close(c) => Some(Record::Close(Close {
                netns: 0,
                spent: vec![(TcpState::Unknown(42), 1)],
                ..c.clone()
            })),
            _ => None,
        })
        .collect();
    records.extend(unknown_netns);
    records
}

/// A line of every type, and more, as the writers write them.
fn every_line() -> Vec<String> {
    let clock = Clock::with_offset(0);
    let mut records = recorded();
    records.extend(built());
    let mut out = String::new();
    let mut json = Json::new(clock);
    let mut listeners = ListenersView::new(clock, Listeners::new(1000 * MS), true, Palette::OFF);
    let mut stuck = StuckView::new(clock, Stuck::new(0), true);
    let mut lives = Lifecycles::default();
    let mut summary = Summary::default();
    let mut feed = Feed::new(1000 * MS);
    for r in &records {
        json.record(r, &mut out);
        listeners.record(r, &mut out);
        stuck.record(r, &mut out);
        lives.observe(r);
        summary.count(r);
        feed.observe(r);
    }
    let last = records.iter().map(Record::at).max().unwrap_or_default();
    listeners.finish(last, &mut out);
    // Stuck since before start, of no known owner, and stuck since then.
    let waiting = Known {
        sock: crate::event::SockId(0x77),
        netns: 0,
        state: TcpState::CloseWait,
        local: "127.0.0.1:8080".parse().unwrap(),
        remote: "127.0.0.1:40000".parse().unwrap(),
        owner: crate::event::Owner::UNKNOWN,
    };
    stuck.record(&Record::Existing(waiting, 0), &mut out);
    let connecting = crate::event::Event::sample(
        1,
        42,
        "curl",
        crate::event::Proto::Tcp,
        crate::event::Detail::transition(
            "[::1]:40000",
            "[::1]:443",
            TcpState::Close,
            TcpState::SynSent,
        ),
    );
    stuck.record(&Record::Event(connecting), &mut out);
    stuck.finish(last, &mut out);
    assert!(out.contains(r#""state":"CLOSE_WAIT","age_ms""#) && out.contains("SYN_SENT"));
    let time = clock::rfc3339(clock, last);
    lifecycles(&lives, true, &time, &mut out);
    summary_line(&summary, &time, &mut out);
    // timewait: the recording's counts, then a tiny port range (pressure)
    // with TIME_WAITs of no known owner from before start.
    let mut view = TimewaitView::new(clock, true, Palette::OFF);
    let settings = Settings {
        top: 10,
        threshold_pct: 50,
        per_request_rate: 1,
    };
    let host = |range| Host {
        port_range: range,
        tw_reuse: Some(2),
        max_tw_buckets: Some(131072),
    };
    let mut tw = Timewait::new(settings, host((32768, 60999)), last, Vec::new());
    let report = tw.tick(last + 1000 * MS, &feed.counted(), feed.in_use(), None);
    view.report(&report, &mut out);
    let orphans = Key {
        netns: 0,
        pid: 0,
        role: Role::Client,
        local: "10.0.0.1".parse().unwrap(),
        remote: "10.0.0.2".parse().unwrap(),
        port: 443,
    };
    let ends = vec![last + crate::track::TW_LEN_NS / 2; 8];
    let mut tw = Timewait::new(settings, host((1000, 1009)), last, vec![(orphans, ends)]);
    let report = tw.tick(
        last + 1000 * MS,
        &feed.counted(),
        &FxHashMap::default(),
        Some(7),
    );
    assert!(!report.pressure.is_empty() && !report.per_request.is_empty());
    view.report(&report, &mut out);
    let header = Header {
        time: time.clone(),
        schema: Some(SCHEMA_VERSION),
        socktrace: "0.1.0".into(),
        host: Some("h".into()),
        kernel: Some("6.18".into()),
        command: "socktrace record x".into(),
        filters: vec!["port 443".into()],
    };
    let unread = Header {
        host: None,
        kernel: None,
        ..header.clone()
    };
    for header in [header, unread] {
        out.push_str(&header.line());
        out.push('\n');
    }
    out.lines().map(String::from).collect()
}

/// What is wrong with `line`, if anything.
fn errors(validator: &jsonschema::Validator, line: &Value) -> Vec<String> {
    validator
        .iter_errors(line)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn every_line_the_writers_write_follows_the_schema() {
    let validator = validator();
    let mut types = BTreeSet::new();
    for line in every_line() {
        let v: Value = serde_json::from_str(&line).expect("JSON");
        let errors = errors(&validator, &v);
        assert!(errors.is_empty(), "{line}\n{errors:#?}");
        types.insert(v["type"].as_str().expect("a type").to_string());
    }
    let named: BTreeSet<String> = schema()["properties"]["type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, named, "a type the schema names is not rendered here");
}

#[test]
fn the_version_is_defined_once() {
    let schema = schema();
    assert_eq!(
        schema["$id"],
        format!("urn:socktrace:schema:{SCHEMA_VERSION}")
    );
    assert_eq!(
        schema["$defs"]["header"]["properties"]["schema"]["const"],
        SCHEMA_VERSION
    );
}

#[test]
fn the_schema_refuses_what_the_contract_rules_out() {
    let validator = validator();
    let lines = every_line();
    let of = |kind: &str| -> Value {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{{\"type\":\"{kind}\"")))
            .unwrap_or_else(|| panic!("no {kind} line"));
        serde_json::from_str(line).unwrap()
    };
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut number_as_string = of("timewait");
    number_as_string["entries_per_sec"] = json!("1993.0");
    cases.push(("a number as a string", number_as_string));
    let mut zero_netns = of("socket");
    zero_netns["netns"] = json!(0);
    cases.push(("0 for an unknown namespace", zero_netns));
    let mut no_time = of("summary");
    no_time.as_object_mut().unwrap().remove("time");
    cases.push(("no time", no_time));
    let mut extra = of("state");
    extra["extra"] = json!(1);
    cases.push(("a field the contract has not", extra));
    let mut no_sock = of("close");
    no_sock["sock"] = Value::Null;
    cases.push(("a close record without its socket", no_sock));
    let mut state = of("state");
    state["new_state"] = json!("ESTABLISHED_");
    cases.push(("a state with no name", state));
    let mut error = of("bind");
    assert_eq!(error["errno"], 0);
    error["error"] = json!("EADDRINUSE");
    cases.push(("success with an error", error));
    let mut header = of("header");
    header["schema"] = json!(SCHEMA_VERSION + 1);
    cases.push(("another version", header));
    let mut kind = of("loss");
    kind["type"] = json!("lost");
    cases.push(("a type not in the contract", kind));
    for (what, line) in cases {
        assert!(!validator.is_valid(&line), "{what}: {line}");
    }
}
