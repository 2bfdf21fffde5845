//! Work-queue figures: Felix consumer groups against a NATS JetStream work-queue stream
//! (memory storage, one durable pull consumer shared by the workers). Both publish with the
//! server's acknowledgement; `consumers` workers, each on its own connection, take messages
//! and ack them. Latency is publish → delivery (stamped in the payload); throughput counts
//! acknowledged messages.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_client::{AckMode, Client, GroupSettings};
use futures::future::{select, Either};
use futures::StreamExt;
use tokio::sync::Notify;

use super::measure::{stamp_of, stamped, Recorder, Trial};
use super::reqs::NAMESPACE;
use super::{Env, Sys};
use crate::procs::BoxError;

/// What one queue figure measures.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// One message at a time: publish, wait until a worker acked it.
    Latency { warm: usize, ops: usize },
    /// `total` messages published in acked batches of 64 (at most `window` unacked), as
    /// fast as the workers ack them.
    Throughput { total: usize, window: usize },
}

struct State {
    rec: Recorder,
    acked: Cell<usize>,
    progress: Notify,
    base: Instant,
}

impl State {
    fn delivered(&self, payload: &[u8]) {
        if let Some((_, sent)) = stamp_of(payload, self.base) {
            self.rec.record(sent.elapsed());
        }
    }

    fn acked(&self, n: usize) {
        self.acked.set(self.acked.get() + n);
        self.progress.notify_one();
    }

    async fn until_acked(&self, n: usize) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked.get() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, self.progress.notified())
                .await
                .is_err()
            {
                return Err(format!("queue: {} of {n} acked after 30 s", self.acked.get()).into());
            }
        }
        Ok(())
    }
}

enum Producer {
    Felix(Client, String),
    Nats(Box<async_nats::jetstream::Context>, String),
}

impl Producer {
    async fn publish(&self, msgs: Vec<Bytes>) -> Result<(), BoxError> {
        match self {
            Producer::Felix(c, s) => {
                c.publish_batch(NAMESPACE, s, &msgs, AckMode::PerBatch)
                    .await?
            }
            Producer::Nats(js, s) => {
                let mut acks = Vec::with_capacity(msgs.len());
                for m in msgs {
                    acks.push(js.publish(s.clone(), m).await?);
                }
                for a in acks {
                    a.await?;
                }
            }
        }
        Ok(())
    }
}

/// One queue figure on a fresh queue named `name`.
pub async fn run(
    sys: Sys,
    env: &Env,
    name: &str,
    consumers: usize,
    payload: usize,
    mode: Mode,
) -> Result<Trial, BoxError> {
    let st = State {
        rec: Recorder::new(),
        acked: Cell::new(0),
        progress: Notify::new(),
        base: Instant::now(),
    };
    let (producer, workers, cleanup) = setup(sys, env, name, consumers, &st).await?;
    let driver = async {
        let t0 = Instant::now();
        let mut measured_from = t0;
        match mode {
            Mode::Latency { warm, ops } => {
                for i in 0..warm + ops {
                    if i == warm {
                        st.rec.on.set(true);
                        measured_from = Instant::now();
                    }
                    producer
                        .publish(vec![stamped(payload.max(16), i as u64, st.base)])
                        .await?;
                    st.until_acked(i + 1).await?;
                }
                let h = st.rec.hist.borrow().clone();
                Ok::<Trial, BoxError>(Trial::from_hist(&h, measured_from.elapsed(), ops as u64))
            }
            Mode::Throughput { total, window } => {
                st.rec.on.set(true);
                let mut published = 0;
                while published < total {
                    let k = 64.min(total - published);
                    if published + k > st.acked.get() + window {
                        st.until_acked(published + k - window).await?;
                    }
                    let msgs = (0..k)
                        .map(|j| stamped(payload.max(16), (published + j) as u64, st.base))
                        .collect();
                    producer.publish(msgs).await?;
                    published += k;
                }
                st.until_acked(total).await?;
                let h = st.rec.hist.borrow().clone();
                Ok(Trial::from_hist(&h, t0.elapsed(), total as u64))
            }
        }
    };
    let r = match select(Box::pin(driver), workers).await {
        Either::Left((r, _)) => r,
        Either::Right((r, _)) => Err(match r {
            Err(e) => format!("queue worker failed: {e}").into(),
            Ok(()) => "queue workers stopped".into(),
        }),
    };
    cleanup();
    r
}

type Workers<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + 'a>>;

async fn setup<'a>(
    sys: Sys,
    env: &Env,
    name: &str,
    consumers: usize,
    st: &'a State,
) -> Result<(Producer, Workers<'a>, Box<dyn FnOnce() + 'a>), BoxError> {
    match sys {
        Sys::Felix => {
            let p = Client::connect(env.felix_config()).await?;
            p.create_group(NAMESPACE, name, "workers", GroupSettings::default())
                .await?;
            let mut clients = Vec::new();
            for _ in 0..consumers {
                clients.push(Client::connect(env.felix_config()).await?);
            }
            let all: Vec<Client> = clients.iter().cloned().chain([p.clone()]).collect();
            let workers = futures::future::try_join_all(clients.into_iter().map(|c| {
                let consumer = c.consumer(NAMESPACE, name, "workers");
                async move {
                    loop {
                        let msgs = consumer.pull(64, Duration::from_millis(200)).await?;
                        if msgs.is_empty() {
                            continue;
                        }
                        for m in &msgs {
                            st.delivered(&m.payload);
                        }
                        let offsets: Vec<u64> = msgs.iter().map(|m| m.offset).collect();
                        consumer.ack(&offsets).await?;
                        st.acked(offsets.len());
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            }))
            .map(|r| r.map(|_| ()));
            let cleanup = Box::new(move || all.iter().for_each(|c| c.close()));
            Ok((
                Producer::Felix(p, name.to_owned()),
                Box::pin(workers),
                cleanup,
            ))
        }
        Sys::Nats => {
            use async_nats::jetstream::{self, consumer, stream};
            let url = env.nats_addr().to_string();
            let js = jetstream::new(async_nats::connect(url.clone()).await?);
            let subject = format!("q.{name}");
            js.create_stream(stream::Config {
                name: name.to_owned(),
                subjects: vec![subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::Memory,
                ..Default::default()
            })
            .await?;
            js.get_stream(name)
                .await?
                .create_consumer(consumer::pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                })
                .await?;
            let mut streams = Vec::new();
            for _ in 0..consumers {
                let js = jetstream::new(async_nats::connect(url.clone()).await?);
                let c: consumer::PullConsumer =
                    js.get_stream(name).await?.get_consumer("workers").await?;
                streams.push(c.messages().await?);
            }
            let workers =
                futures::future::try_join_all(streams.into_iter().map(|mut s| async move {
                    while let Some(m) = s.next().await {
                        let m = m.map_err(|e| e.to_string())?;
                        st.delivered(&m.payload);
                        m.ack().await.map_err(|e| e.to_string())?;
                        st.acked(1);
                    }
                    Ok::<(), BoxError>(())
                }))
                .map(|r| r.map(|_| ()));
            Ok((
                Producer::Nats(Box::new(js), subject),
                Box::pin(workers),
                Box::new(|| {}),
            ))
        }
        other => Err(format!("{other:?} has no queues").into()),
    }
}

use futures::FutureExt;
