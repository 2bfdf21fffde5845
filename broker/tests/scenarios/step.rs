//! One step of a scenario: typed, strict accessors of its JSON object, and why a step fails.

use super::*;

/// Why a step did not complete normally.
pub(crate) enum Fail {
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

pub(crate) type Res<T = ()> = Result<T, Fail>;

pub(crate) fn check<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Check(msg.into()))
}

/// Bytes for a report: UTF-8 text when it is, base64 otherwise; long ones truncated.
pub(crate) fn show(b: &[u8]) -> String {
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

pub(crate) fn show_event(e: &Event) -> String {
    let offset = e.offset.map_or_else(|| "?".to_owned(), |o| o.to_string());
    format!("{}@{offset} {}", e.stream, show(&e.payload))
}

/// Replaces `${ns}` in every string value (not in keys).
pub(crate) fn substitute(v: &mut Value, ns: &str) {
    match v {
        Value::String(s) if s.contains("${ns}") => *s = s.replace("${ns}", ns),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, ns)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, ns)),
        _ => {}
    }
}

pub(crate) fn payload(v: &Value, what: &str) -> Res<Bytes> {
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

/// An entry of an expected list (`what`, e.g. `expect[2]`): an object whose keys are all in
/// `keys`, with a required payload, returned decoded.
pub(crate) fn entry<'a>(
    v: &'a Value,
    what: &str,
    keys: &[&str],
) -> Res<(&'a serde_json::Map<String, Value>, Bytes)> {
    let Some(o) = v.as_object() else {
        return check(format!("{what} must be an object"));
    };
    if let Some(k) = o.keys().find(|k| !keys.contains(&k.as_str())) {
        return check(format!("{what} does not take key {k:?}"));
    }
    let Some(p) = o.get("payload") else {
        return check(format!("{what} needs payload"));
    };
    Ok((o, payload(p, &format!("{what}.payload"))?))
}

pub(crate) fn payload_or_null(v: &Value, what: &str) -> Res<Option<Bytes>> {
    if v.is_null() {
        Ok(None)
    } else {
        payload(v, what).map(Some)
    }
}

/// One step's object with typed, strict accessors.
pub(crate) struct Step<'a> {
    pub(crate) op: &'a str,
    pub(crate) m: &'a Map<String, Value>,
}

impl<'a> Step<'a> {
    pub(crate) fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k)
    }

    pub(crate) fn str(&self, k: &str) -> Res<Option<&'a str>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => check(format!("{k} must be a string")),
        }
    }

    pub(crate) fn req_str(&self, k: &str) -> Res<&'a str> {
        self.str(k)?
            .map_or_else(|| check(format!("{} needs {k}", self.op)), Ok)
    }

    pub(crate) fn u64(&self, k: &str) -> Res<Option<u64>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .map_or_else(|| check(format!("{k} must be a non-negative integer")), Ok),
        }
    }

    pub(crate) fn u32(&self, k: &str) -> Res<Option<u32>> {
        match self.u64(k)? {
            None => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .or_else(|_| check(format!("{k} must fit in 32 bits"))),
        }
    }

    pub(crate) fn req_u64(&self, k: &str) -> Res<u64> {
        self.u64(k)?
            .map_or_else(|| check(format!("{} needs {k}", self.op)), Ok)
    }

    pub(crate) fn bool(&self, k: &str) -> Res<Option<bool>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => check(format!("{k} must be true or false")),
        }
    }

    pub(crate) fn array(&self, k: &str) -> Res<Option<&'a Vec<Value>>> {
        match self.m.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => check(format!("{k} must be an array")),
        }
    }

    pub(crate) fn req_array(&self, k: &str) -> Res<&'a Vec<Value>> {
        self.array(k)?
            .map_or_else(|| check(format!("{} needs {k}", self.op)), Ok)
    }

    /// The step's own deadline: `timeout_ms`, or the op's default.
    pub(crate) fn timeout(&self) -> Res<Duration> {
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
pub(crate) struct WantEvent {
    pub(crate) payload: Bytes,
    pub(crate) stream: Option<String>,
    pub(crate) offset: Option<u64>,
}

impl WantEvent {
    pub(crate) fn matches(&self, e: &Event) -> bool {
        self.payload == e.payload
            && self.stream.as_deref().is_none_or(|s| s == &*e.stream)
            && self.offset.is_none_or(|o| e.offset == Some(o))
    }

    pub(crate) fn show(&self) -> String {
        let stream = self.stream.as_deref().unwrap_or("*");
        let offset = self
            .offset
            .map_or_else(|| "*".to_owned(), |o| o.to_string());
        format!("{stream}@{offset} {}", show(&self.payload))
    }
}
