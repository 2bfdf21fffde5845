//! Runs the language-neutral behaviour scenarios of `tests/scenarios/` (format and rules:
//! `tests/scenarios/README.md`) against an in-process broker with felix-client.
//!
//! Every scenario gets a fresh namespace (`${ns}`); all of them share one broker. Each is
//! reported as passed or failed (with the failing step's index, op and reason); the test fails
//! if any scenario fails or if none was found. `FELIX_SCENARIOS=a,b` runs only those.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::TestBroker;
use felix_client::{
    AckMode, Client, Error as ClientError, ErrorCode, Event, FullPolicy, GroupSettings,
    PutCondition, Start, StreamSettings, Subscription,
};
use serde_json::{Map, Value};
use tokio::time::Instant;

/// Deadline of a step that gives no `timeout_ms`.
const DEFAULT_STEP_MS: u64 = 10_000;
/// Deadline of `expect_events` without `timeout_ms`.
const DEFAULT_EVENTS_MS: u64 = 5_000;
/// Deadline of a scenario without `timeout_ms`.
const DEFAULT_SCENARIO_MS: u64 = 60_000;
/// Slack of the outer deadline over a step's own (which reports more precisely).
const SAFETY_MS: u64 = 5_000;
/// Pause between reads of `wait_until_cache_miss`.
const POLL: Duration = Duration::from_millis(5);
/// Longest `expect_no_event` window.
const MAX_NO_EVENT_MS: u64 = 10_000;

const TOP_KEYS: &[&str] = &["$schema", "name", "description", "timeout_ms", "steps"];
const COMMON_KEYS: &[&str] = &["op", "comment", "expect_error", "timeout_ms"];
/// Keys that check or store a result, so make no sense on a step expected to fail.
const RESULT_KEYS: &[&str] = &[
    "as",
    "expect",
    "expect_count",
    "expect_existed",
    "expect_version",
];

/// Ops whose `expect` is required unless the step has `expect_error`.
const EXPECT_REQUIRED: &[&str] = &["cache_get", "cache_get_many", "dead_letters"];

/// Every op, in README order.
const OPS: &[&str] = &[
    "connect",
    "close",
    "publish",
    "subscribe",
    "expect_events",
    "expect_no_event",
    "create_stream",
    "create_cache",
    "create_group",
    "queue_pull",
    "queue_ack",
    "queue_nack",
    "queue_redrive",
    "dead_letters",
    "cache_put",
    "cache_get",
    "cache_delete",
    "cache_get_many",
    "wait_until_cache_miss",
];

/// Keys each op takes besides [`COMMON_KEYS`].
fn op_keys(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "connect" => &["as", "tenant", "token"],
        "close" => &["client", "subscription"],
        "publish" => &[
            "client",
            "namespace",
            "stream",
            "payload",
            "payloads",
            "ack",
        ],
        "subscribe" => &["client", "as", "namespace", "stream", "from"],
        "expect_events" => &["subscription", "payloads", "events", "any_order"],
        "expect_no_event" => &["subscription", "within_ms"],
        "create_stream" => &[
            "client",
            "namespace",
            "stream",
            "max_records",
            "max_bytes",
            "subscriber_buffer",
            "full_policy",
        ],
        "create_cache" => &[
            "client",
            "namespace",
            "cache",
            "max_bytes",
            "default_ttl_ms",
        ],
        "create_group" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "from",
            "ack_timeout_ms",
            "max_deliveries",
        ],
        "queue_pull" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "max",
            "wait_ms",
            "expect",
            "as",
        ],
        "queue_ack" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "offsets",
            "expect_count",
        ],
        "queue_nack" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "offsets",
            "delay_ms",
            "expect_count",
        ],
        "queue_redrive" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "offsets",
            "expect_count",
        ],
        "dead_letters" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "max",
            "expect",
            "as",
        ],
        "cache_put" => &[
            "client",
            "namespace",
            "cache",
            "key",
            "value",
            "ttl_ms",
            "if_absent",
            "if_version",
            "expect_version",
            "as",
        ],
        "cache_get" => &[
            "client",
            "namespace",
            "cache",
            "key",
            "expect",
            "expect_version",
            "as",
        ],
        "cache_delete" => &["client", "namespace", "cache", "key", "expect_existed"],
        "cache_get_many" => &["client", "namespace", "cache", "keys", "expect"],
        "wait_until_cache_miss" => &["client", "namespace", "cache", "key"],
        _ => return None,
    })
}

/// Why a step did not complete normally.
enum Fail {
    /// A client call returned an error (which the step may expect).
    Call(ClientError),
    /// An expectation did not hold, or the scenario is malformed.
    Check(String),
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        Fail::Call(e)
    }
}

type Res<T = ()> = Result<T, Fail>;

fn check<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Check(msg.into()))
}

/// Bytes for a report: UTF-8 text when it is, base64 otherwise; long ones truncated.
fn show(b: &[u8]) -> String {
    const MAX: usize = 48;
    match std::str::from_utf8(b) {
        Ok(s) if s.len() <= MAX => format!("{s:?}"),
        Ok(s) => {
            let cut = (0..=MAX)
                .rev()
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            format!("{:?}... ({} bytes)", &s[..cut], b.len())
        }
        Err(_) => {
            let enc = base64::engine::general_purpose::STANDARD.encode(&b[..b.len().min(MAX)]);
            let more = if b.len() > MAX { "..." } else { "" };
            format!("b64:{enc}{more} ({} bytes)", b.len())
        }
    }
}

fn show_event(e: &Event) -> String {
    let offset = e.offset.map_or_else(|| "?".to_owned(), |o| o.to_string());
    format!("{}@{offset} {}", e.stream, show(&e.payload))
}

/// Replaces `${ns}` in every string value (not in keys).
fn substitute(v: &mut Value, ns: &str) {
    match v {
        Value::String(s) if s.contains("${ns}") => *s = s.replace("${ns}", ns),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ns)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, ns)),
        _ => {}
    }
}

fn payload(v: &Value, what: &str) -> Res<Bytes> {
    match v {
        Value::String(s) => Ok(Bytes::from(s.clone().into_bytes())),
        Value::Object(m) if m.len() == 1 && m.contains_key("b64") => {
            let Some(s) = m["b64"].as_str() else {
                return check(format!("{what}.b64 must be a string"));
            };
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bytes::from)
                .or_else(|e| check(format!("{what}.b64 is not standard base64: {e}")))
        }
        Value::Object(m) if m.len() == 2 && m.contains_key("repeat") && m.contains_key("count") => {
            match (m["repeat"].as_str(), m["count"].as_u64()) {
                (Some(s), Some(n)) if !s.is_empty() => {
                    Ok(Bytes::from(s.repeat(n as usize).into_bytes()))
                }
                _ => check(format!(
                    "{what}: repeat must be a non-empty string and count a non-negative integer"
                )),
            }
        }
        _ => check(format!(
            "{what} must be a string, {{\"b64\": ...}} or {{\"repeat\": ..., \"count\": n}}"
        )),
    }
}

fn payload_or_null(v: &Value, what: &str) -> Res<Option<Bytes>> {
    if v.is_null() {
        Ok(None)
    } else {
        payload(v, what).map(Some)
    }
}

/// One step's object with typed, strict accessors.
struct Step<'a> {
    op: &'a str,
    m: &'a Map<String, Value>,
}

impl<'a> Step<'a> {
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k)
    }

    fn str(&self, k: &str) -> Res<Option<&'a str>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => check(format!("{k} must be a string")),
        }
    }

    fn req_str(&self, k: &str) -> Res<&'a str> {
        self.str(k)?
            .map_or_else(|| check(format!("{} needs {k}", self.op)), Ok)
    }

    fn u64(&self, k: &str) -> Res<Option<u64>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .map_or_else(|| check(format!("{k} must be a non-negative integer")), Ok),
        }
    }

    fn u32(&self, k: &str) -> Res<Option<u32>> {
        match self.u64(k)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .or_else(|_| check(format!("{k} must fit in 32 bits"))),
        }
    }

    fn req_u64(&self, k: &str) -> Res<u64> {
        self.u64(k)?
            .map_or_else(|| check(format!("{} needs {k}", self.op)), Ok)
    }

    fn bool(&self, k: &str) -> Res<Option<bool>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => check(format!("{k} must be true or false")),
        }
    }

    fn array(&self, k: &str) -> Res<Option<&'a Vec<Value>>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => check(format!("{k} must be an array")),
        }
    }

    fn req_array(&self, k: &str) -> Res<&'a Vec<Value>> {
        self.array(k)?
            .map_or_else(|| check(format!("{} needs {k}", self.op)), Ok)
    }

    /// The step's own deadline: `timeout_ms`, or the op's default.
    fn timeout(&self) -> Res<Duration> {
        let ms = match (self.u64("timeout_ms")?, self.op) {
            (Some(ms), _) => ms,
            (None, "expect_events") => DEFAULT_EVENTS_MS,
            (None, "wait_until_cache_miss") => {
                return check("wait_until_cache_miss needs timeout_ms")
            }
            (None, "queue_pull") => self.u64("wait_ms")?.unwrap_or(0) + DEFAULT_STEP_MS,
            (None, "expect_no_event") => self.u64("within_ms")?.unwrap_or(0) + DEFAULT_STEP_MS,
            (None, _) => DEFAULT_STEP_MS,
        };
        Ok(Duration::from_millis(ms))
    }
}

/// Expected event of `expect_events`.
struct WantEvent {
    payload: Bytes,
    stream: Option<String>,
    offset: Option<u64>,
}

impl WantEvent {
    fn matches(&self, e: &Event) -> bool {
        self.payload == e.payload
            && self.stream.as_deref().is_none_or(|s| s == &*e.stream)
            && self.offset.is_none_or(|o| e.offset == Some(o))
    }

    fn show(&self) -> String {
        let stream = self.stream.as_deref().unwrap_or("*");
        let offset = self
            .offset
            .map_or_else(|| "*".to_owned(), |o| o.to_string());
        format!("{stream}@{offset} {}", show(&self.payload))
    }
}

/// State of one scenario run.
struct Run<'b> {
    broker: &'b TestBroker,
    ns: String,
    clients: HashMap<String, Client>,
    subs: HashMap<String, Subscription>,
    offsets: HashMap<String, Vec<u64>>,
    versions: HashMap<String, u64>,
}

impl Run<'_> {
    fn client(&self, s: &Step<'_>) -> Res<Client> {
        let alias = s.str("client")?.unwrap_or("default");
        match self.clients.get(alias) {
            Some(c) => Ok(c.clone()),
            None => check(format!("unknown client alias {alias:?} (connect it first)")),
        }
    }

    fn ns<'s>(&'s self, s: &Step<'s>) -> Res<&'s str> {
        Ok(s.str("namespace")?.unwrap_or(&self.ns))
    }

    fn sub(&mut self, s: &Step<'_>) -> Res<&mut Subscription> {
        let alias = s.req_str("subscription")?;
        match self.subs.get_mut(alias) {
            Some(sub) => Ok(sub),
            None => check(format!("unknown subscription alias {alias:?}")),
        }
    }

    /// Offsets named by an offset reference (README: "Offset references").
    fn offsets(&self, v: &Value) -> Res<Vec<u64>> {
        let one = |item: &Value| -> Res<Vec<u64>> {
            if let Some(n) = item.as_u64() {
                return Ok(vec![n]);
            }
            let Some(s) = item.as_str() else {
                return check("an offset reference is an alias, \"alias[i]\" or an integer");
            };
            let (alias, index) = match s.strip_suffix(']').and_then(|r| r.split_once('[')) {
                Some((a, i)) => match i.parse::<usize>() {
                    Ok(i) => (a, Some(i)),
                    Err(_) => return check(format!("bad offset reference {s:?}")),
                },
                None => (s, None),
            };
            let Some(list) = self.offsets.get(alias) else {
                return check(format!("unknown offset alias {alias:?}"));
            };
            match index {
                None => Ok(list.clone()),
                Some(i) => list.get(i).map(|o| vec![*o]).map_or_else(
                    || {
                        check(format!(
                            "offset reference {s:?}: alias {alias:?} holds {} offsets",
                            list.len()
                        ))
                    },
                    Ok,
                ),
            }
        };
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(one(item)?);
                }
                Ok(out)
            }
            Value::String(_) => one(v),
            _ => check("offsets must be an offset reference or an array of them"),
        }
    }

    fn version(&self, v: &Value) -> Res<u64> {
        match v {
            Value::String(a) => self
                .versions
                .get(a.as_str())
                .copied()
                .map_or_else(|| check(format!("unknown version alias {a:?}")), Ok),
            v => v.as_u64().map_or_else(
                || check("a version reference is an alias or an integer"),
                Ok,
            ),
        }
    }

    fn check_version(&self, s: &Step<'_>, got: u64) -> Res {
        let Some(rel) = s.get("expect_version") else {
            return Ok(());
        };
        let Some(rel) = rel.as_object().filter(|r| !r.is_empty()) else {
            return check("expect_version must be an object with eq, ne, gt and/or lt");
        };
        for (k, v) in rel {
            let want = self.version(v)?;
            let ok = match k.as_str() {
                "eq" => got == want,
                "ne" => got != want,
                "gt" => got > want,
                "lt" => got < want,
                other => return check(format!("unknown version relation {other:?}")),
            };
            if !ok {
                return check(format!(
                    "version {got} is not {k} {want} ({})",
                    v.as_str().unwrap_or("literal")
                ));
            }
        }
        Ok(())
    }

    fn store_version(&mut self, s: &Step<'_>, v: u64) -> Res {
        if let Some(alias) = s.str("as")? {
            self.versions.insert(alias.to_owned(), v);
        }
        Ok(())
    }

    fn store_offsets(&mut self, s: &Step<'_>, v: Vec<u64>) -> Res {
        if let Some(alias) = s.str("as")? {
            self.offsets.insert(alias.to_owned(), v);
        }
        Ok(())
    }

    fn check_count(s: &Step<'_>, got: u64) -> Res {
        match s.u64("expect_count")? {
            Some(want) if want != got => check(format!("count is {got}, expected {want}")),
            _ => Ok(()),
        }
    }

    /// Runs one step; `Ok` when it behaved as the scenario says (including expected errors).
    async fn step(&mut self, v: &Value) -> Result<(), String> {
        let Some(m) = v.as_object() else {
            return Err("a step must be an object".into());
        };
        let Some(op) = m.get("op").and_then(Value::as_str) else {
            return Err("a step needs a string op".into());
        };
        let Some(keys) = op_keys(op) else {
            return Err(format!("unknown op {op:?}"));
        };
        if let Some(k) = m
            .keys()
            .find(|k| !COMMON_KEYS.contains(&k.as_str()) && !keys.contains(&k.as_str()))
        {
            return Err(format!("{op} does not take key {k:?}"));
        }
        let s = Step { op, m };
        let expected = match m.get("expect_error") {
            None => None,
            Some(e) => {
                let code = e
                    .as_object()
                    .filter(|o| o.len() == 1)
                    .and_then(|o| o.get("code"))
                    .and_then(Value::as_str)
                    .ok_or("expect_error must be {\"code\": \"...\"}")?;
                if ErrorCode::from_str_code(code).is_none() {
                    return Err(format!("expect_error names unknown code {code:?}"));
                }
                // `as` of connect and subscribe names the handle, not a result.
                if let Some(k) = RESULT_KEYS.iter().find(|k| {
                    m.contains_key(**k) && !(**k == "as" && matches!(op, "connect" | "subscribe"))
                }) {
                    return Err(format!("{k:?} cannot be combined with expect_error"));
                }
                if op == "expect_no_event" {
                    return Err("expect_no_event cannot expect an error".into());
                }
                Some(code)
            }
        };
        if expected.is_none() && EXPECT_REQUIRED.contains(&op) && !m.contains_key("expect") {
            return Err(format!("{op} needs expect (unless it has expect_error)"));
        }
        let own = s.timeout().map_err(|f| match f {
            Fail::Check(m) => m,
            Fail::Call(e) => e.to_string(),
        })?;
        // Ops that watch their own deadline report how far they got; the outer one is a net.
        let outer = match op {
            "expect_events" | "expect_no_event" | "wait_until_cache_miss" => {
                own + Duration::from_millis(SAFETY_MS)
            }
            _ => own,
        };
        let r = tokio::time::timeout(outer, self.exec(&s, own, expected.is_some())).await;
        match (r, expected) {
            (Err(_), _) => Err(format!("timed out after {} ms", outer.as_millis())),
            (Ok(Ok(())), None) => Ok(()),
            (Ok(Ok(())), Some(c)) => Err(format!("expected error {c}, but the step succeeded")),
            (Ok(Err(Fail::Check(m))), _) => Err(m),
            (Ok(Err(Fail::Call(e))), None) => Err(format!("unexpected error ({}) {e}", e.code())),
            (Ok(Err(Fail::Call(e))), Some(c)) if e.code().as_str() == c => Ok(()),
            (Ok(Err(Fail::Call(e))), Some(c)) => {
                Err(format!("expected error {c}, got ({}) {e}", e.code()))
            }
        }
    }

    async fn exec(&mut self, s: &Step<'_>, timeout: Duration, expect_error: bool) -> Res {
        match s.op {
            "connect" => self.connect(s).await,
            "close" => self.close(s),
            "publish" => self.publish(s).await,
            "subscribe" => self.subscribe(s).await,
            "expect_events" => self.expect_events(s, timeout, expect_error).await,
            "expect_no_event" => self.expect_no_event(s).await,
            "create_stream" => self.create_stream(s).await,
            "create_cache" => self.create_cache(s).await,
            "create_group" => self.create_group(s).await,
            "queue_pull" => self.queue_pull(s).await,
            "queue_ack" | "queue_nack" | "queue_redrive" => self.queue_settle(s).await,
            "dead_letters" => self.dead_letters(s).await,
            "cache_put" => self.cache_put(s).await,
            "cache_get" => self.cache_get(s).await,
            "cache_delete" => self.cache_delete(s).await,
            "cache_get_many" => self.cache_get_many(s).await,
            "wait_until_cache_miss" => self.wait_until_cache_miss(s, timeout).await,
            other => check(format!("unknown op {other:?}")),
        }
    }

    async fn connect(&mut self, s: &Step<'_>) -> Res {
        let alias = s.str("as")?.unwrap_or("default").to_owned();
        let mut cfg = self.broker.client_config();
        cfg.tenant = s.str("tenant")?.unwrap_or("default").to_owned();
        cfg.token = s.str("token")?.map(str::to_owned);
        let c = Client::connect(cfg).await?;
        if let Some(old) = self.clients.insert(alias, c) {
            old.close();
        }
        Ok(())
    }

    fn close(&mut self, s: &Step<'_>) -> Res {
        match (s.str("client")?, s.str("subscription")?) {
            (Some(_), None) => {
                self.client(s)?.close();
                Ok(())
            }
            (None, Some(alias)) => match self.subs.remove(alias) {
                Some(sub) => {
                    sub.close();
                    Ok(())
                }
                None => check(format!("unknown subscription alias {alias:?}")),
            },
            _ => check("close needs exactly one of client, subscription"),
        }
    }

    async fn publish(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let payloads = match (s.get("payload"), s.array("payloads")?) {
            (Some(p), None) => vec![payload(p, "payload")?],
            (None, Some(ps)) => ps
                .iter()
                .enumerate()
                .map(|(i, p)| payload(p, &format!("payloads[{i}]")))
                .collect::<Res<Vec<_>>>()?,
            _ => return check("publish needs exactly one of payload, payloads"),
        };
        let ack = match s.str("ack")?.unwrap_or("per_batch") {
            "per_batch" => AckMode::PerBatch,
            "per_message" => AckMode::PerMessage,
            "none" => AckMode::None,
            other => return check(format!("unknown ack mode {other:?}")),
        };
        c.publish_batch(self.ns(s)?, s.req_str("stream")?, &payloads, ack)
            .await?;
        Ok(())
    }

    async fn subscribe(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let alias = s.req_str("as")?;
        let start = match s.get("from") {
            None => Start::Latest,
            Some(Value::String(f)) if f == "latest" => Start::Latest,
            Some(Value::String(f)) if f == "earliest" => Start::Earliest,
            Some(v) => match v.as_u64() {
                Some(o) => Start::Offset(o),
                None => return check("from must be \"latest\", \"earliest\" or an offset"),
            },
        };
        let sub = c
            .subscribe(self.ns(s)?, s.req_str("stream")?, start)
            .await?;
        self.subs.insert(alias.to_owned(), sub);
        Ok(())
    }

    async fn expect_events(&mut self, s: &Step<'_>, timeout: Duration, expect_error: bool) -> Res {
        let want: Vec<WantEvent> = match (s.array("payloads")?, s.array("events")?) {
            (Some(ps), None) => ps
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Ok(WantEvent {
                        payload: payload(p, &format!("payloads[{i}]"))?,
                        stream: None,
                        offset: None,
                    })
                })
                .collect::<Res<_>>()?,
            (None, Some(es)) => es
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let Some(o) = e.as_object() else {
                        return check(format!("events[{i}] must be an object"));
                    };
                    if let Some(k) = o
                        .keys()
                        .find(|k| !["payload", "stream", "offset"].contains(&k.as_str()))
                    {
                        return check(format!("events[{i}] does not take key {k:?}"));
                    }
                    let Some(p) = o.get("payload") else {
                        return check(format!("events[{i}] needs payload"));
                    };
                    let stream = match o.get("stream") {
                        None => None,
                        Some(Value::String(st)) => Some(st.clone()),
                        Some(_) => return check(format!("events[{i}].stream must be a string")),
                    };
                    let offset = match o.get("offset") {
                        None => None,
                        Some(v) => match v.as_u64() {
                            Some(n) => Some(n),
                            None => return check(format!("events[{i}].offset must be an integer")),
                        },
                    };
                    Ok(WantEvent {
                        payload: payload(p, &format!("events[{i}].payload"))?,
                        stream,
                        offset,
                    })
                })
                .collect::<Res<_>>()?,
            _ => return check("expect_events needs exactly one of payloads, events"),
        };
        let any_order = s.bool("any_order")?.unwrap_or(false);
        let deadline = Instant::now() + timeout;
        let sub = self.sub(s)?;
        let mut got: Vec<Event> = Vec::with_capacity(want.len());
        let progress = |got: &[Event]| {
            let seen: Vec<String> = got.iter().map(show_event).collect();
            format!(
                "{} of {} events received [{}]",
                got.len(),
                want.len(),
                seen.join(", ")
            )
        };
        while got.len() < want.len() {
            let item = match tokio::time::timeout_at(deadline, sub.next()).await {
                Err(_) => {
                    return check(format!(
                        "timed out after {} ms: {}",
                        timeout.as_millis(),
                        progress(&got)
                    ))
                }
                Ok(None) => return check(format!("subscription ended: {}", progress(&got))),
                Ok(Some(Err(e))) => {
                    return check(format!(
                        "subscription error ({}) {e}: {}",
                        e.code(),
                        progress(&got)
                    ))
                }
                Ok(Some(Ok(ev))) => ev,
            };
            if !any_order {
                let w = &want[got.len()];
                if !w.matches(&item) {
                    return check(format!(
                        "event {} is {}, expected {}",
                        got.len(),
                        show_event(&item),
                        w.show()
                    ));
                }
            }
            got.push(item);
        }
        if any_order {
            let mut used = vec![false; want.len()];
            for ev in &got {
                match (0..want.len()).find(|&i| !used[i] && want[i].matches(ev)) {
                    Some(i) => used[i] = true,
                    None => {
                        let missing: Vec<String> = (0..want.len())
                            .filter(|&i| !used[i])
                            .map(|i| want[i].show())
                            .collect();
                        return check(format!(
                            "unexpected event {} (still expected: {})",
                            show_event(ev),
                            missing.join(", ")
                        ));
                    }
                }
            }
        }
        if expect_error {
            return match tokio::time::timeout_at(deadline, sub.next()).await {
                Err(_) => check(format!(
                    "timed out after {} ms waiting for the error",
                    timeout.as_millis()
                )),
                Ok(None) => check("subscription ended without an error"),
                Ok(Some(Err(e))) => Err(Fail::Call(e)),
                Ok(Some(Ok(ev))) => {
                    check(format!("expected an error, got event {}", show_event(&ev)))
                }
            };
        }
        Ok(())
    }

    async fn expect_no_event(&mut self, s: &Step<'_>) -> Res {
        let within = s.req_u64("within_ms")?;
        if within == 0 || within > MAX_NO_EVENT_MS {
            return check(format!("within_ms must be in 1..={MAX_NO_EVENT_MS}"));
        }
        let sub = self.sub(s)?;
        let item = match sub.try_next() {
            Some(item) => Some(item),
            None => match tokio::time::timeout(Duration::from_millis(within), sub.next()).await {
                Err(_) => return Ok(()),
                Ok(item) => item,
            },
        };
        match item {
            None => check("the subscription ended"),
            Some(Ok(ev)) => check(format!("unexpected event {}", show_event(&ev))),
            Some(Err(e)) => check(format!("unexpected subscription error ({}) {e}", e.code())),
        }
    }

    async fn create_stream(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let full_policy = match s.str("full_policy")? {
            None => None,
            Some("block") => Some(FullPolicy::Block),
            Some("drop_newest") => Some(FullPolicy::DropNewest),
            Some("drop_oldest") => Some(FullPolicy::DropOldest),
            Some("disconnect") => Some(FullPolicy::Disconnect),
            Some(other) => return check(format!("unknown full_policy {other:?}")),
        };
        let settings = StreamSettings {
            max_records: s.u64("max_records")?,
            max_bytes: s.u64("max_bytes")?,
            subscriber_buffer: s.u32("subscriber_buffer")?,
            full_policy,
        };
        c.create_stream(self.ns(s)?, s.req_str("stream")?, settings)
            .await?;
        Ok(())
    }

    async fn create_cache(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let ttl = s.u64("default_ttl_ms")?.map(Duration::from_millis);
        c.create_cache(self.ns(s)?, s.req_str("cache")?, s.u64("max_bytes")?, ttl)
            .await?;
        Ok(())
    }

    async fn create_group(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let from_latest = match s.str("from")? {
            None | Some("earliest") => false,
            Some("latest") => true,
            Some(other) => return check(format!("unknown group start {other:?}")),
        };
        let settings = GroupSettings {
            from_latest,
            ack_timeout: s.u64("ack_timeout_ms")?.map(Duration::from_millis),
            max_deliveries: s.u32("max_deliveries")?,
        };
        c.create_group(
            self.ns(s)?,
            s.req_str("stream")?,
            s.req_str("group")?,
            settings,
        )
        .await?;
        Ok(())
    }

    fn consumer(&self, s: &Step<'_>) -> Res<felix_client::Consumer> {
        Ok(self
            .client(s)?
            .consumer(self.ns(s)?, s.req_str("stream")?, s.req_str("group")?))
    }

    async fn queue_pull(&mut self, s: &Step<'_>) -> Res {
        let consumer = self.consumer(s)?;
        let max = s.u32("max")?.unwrap_or(100);
        let wait = Duration::from_millis(s.u64("wait_ms")?.unwrap_or(0));
        let got = consumer.pull(max, wait).await?;
        let shown = || {
            let v: Vec<String> = got
                .iter()
                .map(|m| format!("{}@{} attempt {}", show(&m.payload), m.offset, m.attempt))
                .collect();
            format!("[{}]", v.join(", "))
        };
        if let Some(want) = s.array("expect")? {
            if want.len() != got.len() {
                return check(format!(
                    "pulled {} messages, expected {}: {}",
                    got.len(),
                    want.len(),
                    shown()
                ));
            }
            for (i, (w, m)) in want.iter().zip(&got).enumerate() {
                let Some(o) = w.as_object() else {
                    return check(format!("expect[{i}] must be an object"));
                };
                if let Some(k) = o.keys().find(|k| *k != "payload" && *k != "attempt") {
                    return check(format!("expect[{i}] does not take key {k:?}"));
                }
                let Some(p) = o.get("payload") else {
                    return check(format!("expect[{i}] needs payload"));
                };
                let p = payload(p, &format!("expect[{i}].payload"))?;
                let attempt = match o.get("attempt") {
                    None => None,
                    Some(a) => match a.as_u64() {
                        Some(a) => Some(a),
                        None => return check(format!("expect[{i}].attempt must be an integer")),
                    },
                };
                if p != m.payload || attempt.is_some_and(|a| a != u64::from(m.attempt)) {
                    return check(format!(
                        "message {i} is {} attempt {}, expected {} attempt {}; pulled {}",
                        show(&m.payload),
                        m.attempt,
                        show(&p),
                        attempt.map_or_else(|| "*".to_owned(), |a| a.to_string()),
                        shown()
                    ));
                }
            }
        }
        self.store_offsets(s, got.iter().map(|m| m.offset).collect())
    }

    async fn queue_settle(&mut self, s: &Step<'_>) -> Res {
        let consumer = self.consumer(s)?;
        let offsets = match s.get("offsets") {
            Some(v) => Some(self.offsets(v)?),
            None if s.op == "queue_redrive" => None,
            None => return check(format!("{} needs offsets", s.op)),
        };
        let n = match s.op {
            "queue_ack" => consumer.ack(offsets.as_deref().unwrap_or_default()).await?,
            "queue_nack" => {
                let delay = Duration::from_millis(s.u64("delay_ms")?.unwrap_or(0));
                consumer
                    .nack(offsets.as_deref().unwrap_or_default(), delay)
                    .await?
            }
            _ => consumer.redrive(offsets.as_deref()).await?,
        };
        Self::check_count(s, n)
    }

    async fn dead_letters(&mut self, s: &Step<'_>) -> Res {
        let consumer = self.consumer(s)?;
        let want = s.array("expect")?;
        let got = consumer.dead_letters(s.u32("max")?.unwrap_or(100)).await?;
        let Some(want) = want else {
            return check("dead_letters needs expect");
        };
        let shown = || {
            let v: Vec<String> = got
                .iter()
                .map(|d| {
                    format!(
                        "{}@{} attempts {} {}",
                        show(&d.payload),
                        d.offset,
                        d.attempts,
                        d.reason
                    )
                })
                .collect();
            format!("[{}]", v.join(", "))
        };
        if want.len() != got.len() {
            return check(format!(
                "{} dead letters, expected {}: {}",
                got.len(),
                want.len(),
                shown()
            ));
        }
        for (i, (w, d)) in want.iter().zip(&got).enumerate() {
            let Some(o) = w.as_object() else {
                return check(format!("expect[{i}] must be an object"));
            };
            if let Some(k) = o
                .keys()
                .find(|k| !["payload", "attempts", "reason"].contains(&k.as_str()))
            {
                return check(format!("expect[{i}] does not take key {k:?}"));
            }
            let Some(p) = o.get("payload") else {
                return check(format!("expect[{i}] needs payload"));
            };
            let p = payload(p, &format!("expect[{i}].payload"))?;
            let attempts_ok = match o.get("attempts") {
                None => true,
                Some(a) => match a.as_u64() {
                    Some(a) => a == u64::from(d.attempts),
                    None => return check(format!("expect[{i}].attempts must be an integer")),
                },
            };
            let reason_ok = match o.get("reason") {
                None => true,
                Some(Value::String(r)) => *r == d.reason,
                Some(_) => return check(format!("expect[{i}].reason must be a string")),
            };
            if p != d.payload || !attempts_ok || !reason_ok {
                return check(format!(
                    "dead letter {i} does not match {w}; got {}",
                    shown()
                ));
            }
        }
        self.store_offsets(s, got.iter().map(|d| d.offset).collect())
    }

    async fn cache_put(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let Some(value) = s.get("value") else {
            return check("cache_put needs value");
        };
        let value = payload(value, "value")?;
        let ttl = s.u64("ttl_ms")?.map(Duration::from_millis);
        let cond = match (s.bool("if_absent")?, s.get("if_version")) {
            (Some(true), None) => PutCondition::IfAbsent,
            (None | Some(false), Some(v)) => PutCondition::IfVersion(self.version(v)?),
            (None | Some(false), None) => PutCondition::Always,
            (Some(true), Some(_)) => return check("if_absent and if_version are exclusive"),
        };
        let v = c
            .cache_put_if(
                self.ns(s)?,
                s.req_str("cache")?,
                s.req_str("key")?,
                value,
                ttl,
                cond,
            )
            .await?;
        self.check_version(s, v)?;
        self.store_version(s, v)
    }

    async fn cache_get(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let want = s
            .get("expect")
            .map(|w| payload_or_null(w, "expect"))
            .transpose()?;
        let got = c
            .cache_get(self.ns(s)?, s.req_str("cache")?, s.req_str("key")?)
            .await?;
        let Some(want) = want else {
            return check("cache_get needs expect (a value, or null for a miss)");
        };
        match (&want, &got) {
            (None, None) => {
                if s.get("expect_version").is_some() || s.get("as").is_some() {
                    return check("expect_version and as need a hit");
                }
                Ok(())
            }
            (Some(w), Some(g)) if *w == g.value => {
                self.check_version(s, g.version)?;
                self.store_version(s, g.version)
            }
            (w, g) => check(format!(
                "got {}, expected {}",
                g.as_ref().map_or_else(
                    || "a miss".to_owned(),
                    |g| format!("{} (version {})", show(&g.value), g.version)
                ),
                w.as_ref().map_or_else(|| "a miss".to_owned(), |w| show(w))
            )),
        }
    }

    async fn cache_delete(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let existed = c
            .cache_delete(self.ns(s)?, s.req_str("cache")?, s.req_str("key")?)
            .await?;
        match s.bool("expect_existed")? {
            Some(want) if want != existed => check(format!(
                "delete reported existed = {existed}, expected {want}"
            )),
            _ => Ok(()),
        }
    }

    async fn cache_get_many(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let keys = s.req_array("keys")?;
        let keys: Vec<&str> = keys
            .iter()
            .map(|k| k.as_str().map_or_else(|| check("keys must be strings"), Ok))
            .collect::<Res<_>>()?;
        let want: Option<Vec<Option<Bytes>>> = s
            .array("expect")?
            .map(|w| {
                w.iter()
                    .enumerate()
                    .map(|(i, w)| payload_or_null(w, &format!("expect[{i}]")))
                    .collect::<Res<_>>()
            })
            .transpose()?;
        if want.as_ref().is_some_and(|w| w.len() != keys.len()) {
            return check("expect needs one entry per key");
        }
        let got = c
            .cache_get_many(self.ns(s)?, s.req_str("cache")?, &keys)
            .await?;
        let Some(want) = want else {
            return check("cache_get_many needs expect");
        };
        if got.len() != keys.len() {
            return check(format!("{} results for {} keys", got.len(), keys.len()));
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if w.as_ref() != g.as_ref().map(|g| &g.value) {
                return check(format!(
                    "key {:?}: got {}, expected {}",
                    keys[i],
                    g.as_ref()
                        .map_or_else(|| "a miss".to_owned(), |g| show(&g.value)),
                    w.as_ref().map_or_else(|| "a miss".to_owned(), |w| show(w))
                ));
            }
        }
        Ok(())
    }

    async fn wait_until_cache_miss(&mut self, s: &Step<'_>, timeout: Duration) -> Res {
        let c = self.client(s)?;
        let (ns, cache, key) = (self.ns(s)?, s.req_str("cache")?, s.req_str("key")?);
        let deadline = Instant::now() + timeout;
        loop {
            let Some(v) = c.cache_get(ns, cache, key).await? else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return check(format!(
                    "{key:?} still holds {} after {} ms",
                    show(&v.value),
                    timeout.as_millis()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Runs one scenario file; `Err` is the report line of its failure.
async fn run_file(broker: &TestBroker, path: &Path, index: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    run_text(broker, stem, &text, index).await
}

/// Runs one scenario given as JSON text; `stem` is its file name without `.json`.
async fn run_text(broker: &TestBroker, stem: &str, text: &str, index: usize) -> Result<(), String> {
    let mut doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let top = doc.as_object().ok_or("a scenario must be a JSON object")?;
    if let Some(k) = top.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown top-level key {k:?}"));
    }
    match top.get("name").and_then(Value::as_str) {
        Some(n) if n == stem => {}
        Some(n) => return Err(format!("name {n:?} differs from the file name {stem:?}")),
        None => return Err("missing name".into()),
    }
    if top
        .get("description")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("missing description".into());
    }
    let timeout = match top.get("timeout_ms") {
        None => DEFAULT_SCENARIO_MS,
        Some(v) => v.as_u64().ok_or("timeout_ms must be an integer")?,
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let ns = format!("sc_{index}_{stamp:x}");
    substitute(&mut doc, &ns);
    let steps = match doc.get("steps") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        _ => return Err("steps must be a non-empty array".into()),
    };
    let mut run = Run {
        broker,
        ns,
        clients: HashMap::new(),
        subs: HashMap::new(),
        offsets: HashMap::new(),
        versions: HashMap::new(),
    };
    let mut at = 0usize;
    let r = tokio::time::timeout(Duration::from_millis(timeout), async {
        for (i, step) in steps.iter().enumerate() {
            at = i;
            run.step(step).await?;
        }
        Ok::<(), String>(())
    })
    .await;
    let r = match r {
        Ok(r) => r,
        Err(_) => Err(format!("scenario timed out after {timeout} ms")),
    };
    run.subs.clear();
    for c in run.clients.values() {
        c.close();
    }
    r.map_err(|reason| {
        let op = steps[at]
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        format!("step {at} ({op}): {reason}")
    })
}

fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().is_some_and(|n| n != "schema.json")
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios");
    let mut files = scenario_files(&dir);
    if let Ok(only) = std::env::var("FELIX_SCENARIOS") {
        let names: Vec<&str> = only
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        for n in &names {
            assert!(
                files.iter().any(|p| p.file_stem().is_some_and(|s| s == *n)),
                "FELIX_SCENARIOS names {n:?}, which is not in {}",
                dir.display()
            );
        }
        files.retain(|p| names.iter().any(|n| p.file_stem().is_some_and(|s| s == *n)));
    }
    assert!(!files.is_empty(), "no scenario found in {}", dir.display());
    let broker = TestBroker::start("scenarios").await;
    let mut failed = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let started = std::time::Instant::now();
        match run_file(&broker, path, i).await {
            Ok(()) => println!("PASS {name} ({} ms)", started.elapsed().as_millis()),
            Err(reason) => {
                println!("FAIL {name}: {reason}");
                failed.push(format!("{name}: {reason}"));
            }
        }
    }
    println!(
        "{} scenarios: {} passed, {} failed",
        files.len(),
        files.len() - failed.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} scenarios failed:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

/// The runner itself: each of these scenarios is wrong in one way and must fail at the given
/// step with a reason containing the given text, so a passing suite is never a vacuous one.
#[tokio::test]
async fn runner_reports_failures() {
    let cases: &[(&str, &str)] = &[
        // (steps after a `connect` at index 0, "index|expected text")
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_events","subscription":"s","payloads":["b"]}"#,
            "3|event 0 is",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_events","subscription":"s","events":[{"payload":"a","offset":1}]}"#,
            "3|expected *@1",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_events","subscription":"s","events":[{"payload":"a","stream":"y"}]}"#,
            "3|expected y@*",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payloads":["a","b"]},
               {"op":"expect_events","subscription":"s","any_order":true,"payloads":["b","c"]}"#,
            "3|unexpected event",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},
               {"op":"expect_events","subscription":"s","payloads":["a"],"timeout_ms":100}"#,
            "2|timed out after 100 ms: 0 of 1",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"publish","stream":"x","payload":"a"},
               {"op":"expect_no_event","subscription":"s","within_ms":2000}"#,
            "3|unexpected event",
        ),
        (
            r#"{"op":"subscribe","as":"s","stream":"x"},{"op":"close","client":"default"},
               {"op":"expect_events","subscription":"s","payloads":[],"expect_error":{"code":"closed"}}"#,
            "3|ended without an error",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"invalid_argument"}}"#,
            "1|but the step succeeded",
        ),
        (
            r#"{"op":"publish","stream":"x y","payload":"a","expect_error":{"code":"conflict"}}"#,
            "1|expected error conflict, got (invalid_argument)",
        ),
        (
            r#"{"op":"publish","stream":"x y","payload":"a"}"#,
            "1|unexpected error (invalid_argument)",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a"},
               {"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a","attempt":2}]}"#,
            "2|message 0 is",
        ),
        (
            r#"{"op":"queue_pull","stream":"x","group":"g","expect":[{"payload":"a"}]}"#,
            "1|pulled 0 messages, expected 1",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a"},
               {"op":"queue_pull","stream":"x","group":"g","as":"m"},
               {"op":"queue_ack","stream":"x","group":"g","offsets":"m","expect_count":2}"#,
            "3|count is 1, expected 2",
        ),
        (
            r#"{"op":"queue_ack","stream":"x","group":"g","offsets":"nope"}"#,
            "1|unknown offset alias",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a"},
               {"op":"queue_pull","stream":"x","group":"g","as":"m"},
               {"op":"queue_ack","stream":"x","group":"g","offsets":"m[1]"}"#,
            "3|holds 1 offsets",
        ),
        (
            r#"{"op":"dead_letters","stream":"x","group":"g","expect":[{"payload":"a"}]}"#,
            "1|0 dead letters, expected 1",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v"},
               {"op":"cache_get","cache":"c","key":"k","expect":"w"}"#,
            "2|got \"v\"",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v"},
               {"op":"cache_get","cache":"c","key":"k","expect":null}"#,
            "2|expected a miss",
        ),
        (
            r#"{"op":"cache_get","cache":"c","key":"k","expect":"v"}"#,
            "1|got a miss",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v","as":"v1"},
               {"op":"cache_put","cache":"c","key":"k","value":"w","expect_version":{"lt":"v1"}}"#,
            "2|is not lt",
        ),
        (
            r#"{"op":"cache_delete","cache":"c","key":"k","expect_existed":true}"#,
            "1|existed = false, expected true",
        ),
        (
            r#"{"op":"cache_get_many","cache":"c","keys":["a"],"expect":["x"]}"#,
            "1|key \"a\": got a miss",
        ),
        (
            r#"{"op":"cache_put","cache":"c","key":"k","value":"v"},
               {"op":"wait_until_cache_miss","cache":"c","key":"k","timeout_ms":100}"#,
            "2|still holds",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a","typo":1}"#,
            "1|does not take key \"typo\"",
        ),
        (
            r#"{"op":"cache_get","cache":"c","key":"k"}"#,
            "1|needs expect",
        ),
        (
            r#"{"op":"cache_get","cache":"c","key":"k","expect":null,"expect_error":{"code":"closed"}}"#,
            "1|cannot be combined with expect_error",
        ),
        (
            r#"{"op":"publish","client":"ghost","stream":"x","payload":"a"}"#,
            "1|unknown client alias",
        ),
        (
            r#"{"op":"queue_pull","stream":"x","group":"g","wait_ms":3000,"timeout_ms":200}"#,
            "1|timed out after 200 ms",
        ),
        (r#"{"op":"fly"}"#, "1|unknown op"),
        (
            r#"{"op":"expect_error_typo","expect_error":{"code":"nonsense"}}"#,
            "1|unknown op",
        ),
        (
            r#"{"op":"publish","stream":"x","payload":"a","expect_error":{"code":"nonsense"}}"#,
            "1|unknown code",
        ),
    ];
    let broker = TestBroker::start("scenario-runner").await;
    let mut wrong = Vec::new();
    for (i, (steps, want)) in cases.iter().enumerate() {
        let (at, text) = want.split_once('|').unwrap();
        let doc = format!(
            r#"{{"name":"case","description":"runner self-test","steps":[{{"op":"connect"}},{steps}]}}"#
        );
        match run_text(&broker, "case", &doc, 1000 + i).await {
            Ok(()) => wrong.push(format!("case {i} passed; expected a failure at {want}")),
            Err(reason) => {
                let prefix = format!("step {at} (");
                if !reason.starts_with(&prefix) || !reason.contains(text) {
                    wrong.push(format!("case {i}: expected {want}, got {reason}"));
                }
            }
        }
    }
    // Scenario-level rules.
    let top: &[(&str, &str, &str)] = &[
        (
            "other",
            r#"{"name":"case","description":"d","steps":[{"op":"connect"}]}"#,
            "differs from the file name",
        ),
        (
            "case",
            r#"{"name":"case","description":"d","steps":[]}"#,
            "non-empty",
        ),
        (
            "case",
            r#"{"name":"case","description":"d","steps":[{"op":"connect"}],"extra":1}"#,
            "unknown top-level key",
        ),
        (
            "case",
            r#"{"name":"case","description":"d","timeout_ms":300,"steps":[{"op":"connect"},
               {"op":"subscribe","as":"s","stream":"x"},
               {"op":"expect_events","subscription":"s","payloads":["never"],"timeout_ms":5000}]}"#,
            "step 2 (expect_events): scenario timed out after 300 ms",
        ),
    ];
    for (i, (stem, doc, text)) in top.iter().enumerate() {
        match run_text(&broker, stem, doc, 2000 + i).await {
            Ok(()) => wrong.push(format!("top case {i} passed; expected {text:?}")),
            Err(reason) if reason.contains(text) => {}
            Err(reason) => wrong.push(format!("top case {i}: expected {text:?}, got {reason}")),
        }
    }
    // And a correct one passes, with `${ns}` substituted.
    let ok = r#"{"name":"case","description":"d","steps":[{"op":"connect"},
        {"op":"subscribe","as":"s","namespace":"${ns}","stream":"x"},
        {"op":"publish","stream":"x","payload":{"b64":"AP8="}},
        {"op":"expect_events","subscription":"s","events":[{"payload":{"b64":"AP8="},"stream":"x","offset":0}]}]}"#;
    if let Err(reason) = run_text(&broker, "case", ok, 3000).await {
        wrong.push(format!("the correct case failed: {reason}"));
    }
    assert!(
        wrong.is_empty(),
        "the runner misjudged:\n  {}",
        wrong.join("\n  ")
    );
}

/// `schema.json` and this runner accept exactly the same ops and keys, so a scenario the schema
/// passes is never refused here (or the other way round).
#[test]
fn schema_matches_runner() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/schema.json");
    let text = std::fs::read_to_string(&path).expect("schema.json");
    let schema: Value = serde_json::from_str(&text).expect("schema.json is JSON");
    let top: Vec<&str> = schema["properties"]
        .as_object()
        .expect("top-level properties")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want_top = TOP_KEYS.to_vec();
    let mut got_top = top.clone();
    want_top.sort_unstable();
    got_top.sort_unstable();
    assert_eq!(got_top, want_top, "top-level keys");
    let ops: Vec<&str> = schema["$defs"]["step"]["properties"]["op"]["enum"]
        .as_array()
        .expect("op enum")
        .iter()
        .map(|v| v.as_str().expect("op name"))
        .collect();
    let mut sorted = ops.clone();
    let mut want_ops = OPS.to_vec();
    sorted.sort_unstable();
    want_ops.sort_unstable();
    assert_eq!(sorted, want_ops, "ops");
    let defs = schema["$defs"].as_object().expect("$defs");
    let step_defs = defs.keys().filter(|k| k.starts_with("step_")).count();
    assert_eq!(step_defs, ops.len(), "one step_<op> definition per op");
    for op in ops {
        let keys = op_keys(op).unwrap_or_else(|| panic!("the runner does not know op {op:?}"));
        let props = defs[&format!("step_{op}")]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema has no step_{op}"));
        let mut got: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = COMMON_KEYS.iter().chain(keys).copied().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "keys of op {op}");
    }
}
