//! A scenario's state, the loop over its steps, and the connection and pub/sub ops.

use super::*;

/// State of one scenario run.
pub(crate) struct Run<'b> {
    pub(crate) broker: &'b TestBroker,
    pub(crate) ns: String,
    pub(crate) clients: HashMap<String, Client>,
    pub(crate) subs: HashMap<String, Subscription>,
    pub(crate) offsets: HashMap<String, Vec<u64>>,
    pub(crate) versions: HashMap<String, u64>,
}

impl Run<'_> {
    pub(crate) fn client(&self, s: &Step<'_>) -> Res<Client> {
        let alias = s.str("client")?.unwrap_or("default");
        match self.clients.get(alias) {
            Some(c) => Ok(c.clone()),
            None => check(format!("unknown client alias {alias:?} (connect it first)")),
        }
    }

    pub(crate) fn ns<'s>(&'s self, s: &Step<'s>) -> Res<&'s str> {
        Ok(s.str("namespace")?.unwrap_or(&self.ns))
    }

    pub(crate) fn sub(&mut self, s: &Step<'_>) -> Res<&mut Subscription> {
        let alias = s.req_str("subscription")?;
        match self.subs.get_mut(alias) {
            Some(sub) => Ok(sub),
            None => check(format!("unknown subscription alias {alias:?}")),
        }
    }

    /// Offsets named by an offset reference (README: "Offset references").
    pub(crate) fn offsets(&self, v: &Value) -> Res<Vec<u64>> {
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

    pub(crate) fn version(&self, v: &Value) -> Res<u64> {
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

    pub(crate) fn check_version(&self, s: &Step<'_>, got: u64) -> Res {
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

    pub(crate) fn store_version(&mut self, s: &Step<'_>, v: u64) -> Res {
        if let Some(alias) = s.str("as")? {
            self.versions.insert(alias.to_owned(), v);
        }
        Ok(())
    }

    pub(crate) fn store_offsets(&mut self, s: &Step<'_>, v: Vec<u64>) -> Res {
        if let Some(alias) = s.str("as")? {
            self.offsets.insert(alias.to_owned(), v);
        }
        Ok(())
    }

    pub(crate) fn check_count(s: &Step<'_>, got: u64) -> Res {
        match s.u64("expect_count")? {
            Some(want) if want != got => check(format!("count is {got}, expected {want}")),
            _ => Ok(()),
        }
    }

    /// Runs one step; `Ok` when it behaved as the scenario says (including expected errors).
    pub(crate) async fn step(&mut self, v: &Value) -> Result<(), String> {
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

    pub(crate) async fn exec(
        &mut self,
        s: &Step<'_>,
        timeout: Duration,
        expect_error: bool,
    ) -> Res {
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

    pub(crate) async fn connect(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) fn close(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn publish(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn subscribe(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn expect_events(
        &mut self,
        s: &Step<'_>,
        timeout: Duration,
        expect_error: bool,
    ) -> Res {
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
                    let (o, payload) =
                        entry(e, &format!("events[{i}]"), &["payload", "stream", "offset"])?;
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
                        payload,
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

    pub(crate) async fn expect_no_event(&mut self, s: &Step<'_>) -> Res {
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
}
