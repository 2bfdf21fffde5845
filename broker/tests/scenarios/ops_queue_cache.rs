//! The queue and cache ops of a scenario.

use super::*;

impl Run<'_> {
    pub(crate) async fn create_stream(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn create_cache(&mut self, s: &Step<'_>) -> Res {
        let c = self.client(s)?;
        let ttl = s.u64("default_ttl_ms")?.map(Duration::from_millis);
        c.create_cache(self.ns(s)?, s.req_str("cache")?, s.u64("max_bytes")?, ttl)
            .await?;
        Ok(())
    }

    pub(crate) async fn create_group(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) fn consumer(&self, s: &Step<'_>) -> Res<felix_client::Consumer> {
        Ok(self
            .client(s)?
            .consumer(self.ns(s)?, s.req_str("stream")?, s.req_str("group")?))
    }

    pub(crate) async fn queue_pull(&mut self, s: &Step<'_>) -> Res {
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
                let (o, p) = entry(w, &format!("expect[{i}]"), &["payload", "attempt"])?;
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

    pub(crate) async fn queue_settle(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn dead_letters(&mut self, s: &Step<'_>) -> Res {
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
            let (o, p) = entry(
                w,
                &format!("expect[{i}]"),
                &["payload", "attempts", "reason"],
            )?;
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

    pub(crate) async fn cache_put(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn cache_get(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn cache_delete(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn cache_get_many(&mut self, s: &Step<'_>) -> Res {
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

    pub(crate) async fn wait_until_cache_miss(&mut self, s: &Step<'_>, timeout: Duration) -> Res {
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
