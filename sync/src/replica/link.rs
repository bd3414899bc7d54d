//! A [`Session`] over one QUIC connection (同期の接続): the loop tsunagid runs per peer and
//! the benchmarks run between two stores, so both measure and ship the same code.
//!
//! One bidirectional stream carries the session's messages, framed by
//! [`crate::net::write_msg`]. The dialler opens it, the acceptor accepts it. Reading a
//! frame is not cancel-safe, so one task reads whole messages and hands them over a
//! channel; the loop waits on that channel, on local changes and on shutdown. The
//! session's work reads and writes the store, so it runs on the blocking pool.
//!
//! Writing has its own task and queue too (see [`Link::run`]), bounded in bytes: the
//! session hands out records only while the queue holds less than [`WRITE_QUEUE_BYTES`],
//! and is asked for more each time the writer has drained it below a quarter of that. A
//! peer that asks for every month and reads nothing holds that much of this device's
//! memory, not the months.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};

use super::{Message, Session, SessionError, SessionStats};
use crate::net::{self, PeerConnection};
use crate::store::Store;

/// The largest message a peer may send (a batch of records is about 1 MiB; a month
/// document's first sync message for 50,000 checks under 1 MiB).
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Bytes of messages the link lets wait for the peer to read before the session stops
/// handing out records (a batch of records is about 1 MiB).
pub const WRITE_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Below this the session is asked for more records.
const WRITE_QUEUE_LOW: usize = WRITE_QUEUE_BYTES / 4;

/// QUIC application close codes, beside the transport's own ([`net::CLOSE_SHUTDOWN`],
/// [`net::CLOSE_REFUSED`]).
pub const CLOSE_PROTOCOL: u32 = 12;
/// The connection was closed because the two devices already have another (an end, not a
/// failure).
pub const CLOSE_DUPLICATE: u32 = 10;

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer broke the protocol (a message that is not one, another version, a frame
    /// too large); the connection was closed with [`CLOSE_PROTOCOL`].
    #[error("peer broke the sync protocol: {0}")]
    Protocol(String),
    /// The connection failed or was closed by the peer.
    #[error("connection lost: {0}")]
    Connection(String),
    /// This device's store failed; the link is tried again later.
    #[error("sync stopped by a local failure: {0}")]
    Local(String),
}

/// What a link needs from its owner.
pub struct Link {
    /// The store.
    pub store: Store,
    /// Bumped by every local write; bumped by the link when records arrive (so the other
    /// links pass them on). Every bump adds 1 (`send_modify(|n| *n += 1)`): a link tells
    /// its own bumps from the others' by the value.
    pub changed: watch::Sender<u64>,
    /// Turns true at shutdown: the connection is closed with [`net::CLOSE_SHUTDOWN`].
    pub stopping: watch::Receiver<bool>,
    /// Sees the session after each step (for status).
    pub observe: Arc<dyn Fn(&Session) + Send + Sync>,
    /// Told when records arrived.
    pub on_received: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// Runs `session` over `conn` until either side closes it (`Ok` with the session's
    /// counters) or something fails.
    pub async fn run(
        &self,
        conn: &PeerConnection,
        initiator: bool,
        session: Session,
    ) -> Result<SessionStats, LinkError> {
        let connection = conn.connection.clone();
        let lost = |e: quinn::ConnectionError| LinkError::Connection(e.to_string());
        let (send, recv) = if initiator {
            connection.open_bi().await.map_err(lost)?
        } else {
            connection.accept_bi().await.map_err(lost)?
        };
        let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, LinkError>>(8);
        let reader = tokio::spawn(read_loop(recv, tx));
        // Writing has its own task and queue: if the loop itself waited for a slow peer to
        // read, two devices each sending the other a month would each wait for the other
        // to read, and neither would. So the loop never waits for the queue; instead the
        // session hands out records only while the queue has room, and the rest waits in
        // it as ids until the writer says the queue has drained.
        let (tx, queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let out = Outbox {
            tx,
            bytes: Arc::default(),
            drained: Arc::default(),
        };
        let mut writer = tokio::spawn(write_loop(
            send,
            queued,
            out.bytes.clone(),
            out.drained.clone(),
        ));
        let mut local = self.changed.subscribe();
        // The `changed` value this link last handled, and how many bumps since were its
        // own: records from the peer need no answer to the same peer (it sent them; the
        // others' links answer the bump), and answering them would re-derive what the
        // peer lacks after every batch of a month being received. Counted, not compared
        // by value: the loop often receives several batches before it turns to `changed`.
        let mut seen = *local.borrow();
        let mut own: u64 = 0;
        let mut stopping = self.stopping.clone();
        // The session's counters after its last step: what an orderly close reports (the
        // session itself is inside the step that a closed connection interrupts).
        let mut last = SessionStats::default();
        let result = async {
            let (mut session, first) = self.step(session, &out, |s, st| s.start(st)).await?;
            last = session.stats();
            out.queue(first)?;
            loop {
                tokio::select! {
                    message = rx.recv() => {
                        let bytes = match message {
                            Some(Ok(b)) => b,
                            Some(Err(e)) => return Err(e),
                            None => return Ok(session.stats()),
                        };
                        let before = session.stats().records_in;
                        let (s, reply) = self
                            .step(session, &out, move |s, st| {
                                s.receive(st, &bytes).map(|(m, _)| m)
                            })
                            .await?;
                        session = s;
                        last = session.stats();
                        out.queue(reply)?;
                        if session.stats().records_in > before {
                            self.changed.send_modify(|n| *n += 1);
                            own += 1;
                            (self.on_received)();
                        }
                    }
                    changed = local.changed() => {
                        if changed.is_err() {
                            return Ok(session.stats());
                        }
                        // Values only grow and every writer adds 1: any bump by anyone
                        // else makes the rise larger than this link's own count.
                        let now = *local.borrow_and_update();
                        let only_own = now.wrapping_sub(seen) == own;
                        seen = now;
                        own = 0;
                        if only_own {
                            continue;
                        }
                        let (s, reply) =
                            self.step(session, &out, |s, st| s.local_change(st)).await?;
                        session = s;
                        last = session.stats();
                        out.queue(reply)?;
                    }
                    // The writer drained the queue: records asked for and not yet handed
                    // out go now, as far as there is room.
                    _ = out.drained.notified(), if session.has_unsent() => {
                        if out.room() == 0 {
                            continue;
                        }
                        let (s, more) = self.step(session, &out, |s, st| s.send_more(st)).await?;
                        session = s;
                        last = session.stats();
                        out.queue(more)?;
                    }
                    written = &mut writer => {
                        return Err(match written {
                            Ok(Err(e)) => e,
                            _ => LinkError::Connection("the writer stopped".into()),
                        });
                    }
                    _ = stopping.changed() => {
                        connection.close(net::CLOSE_SHUTDOWN.into(), net::CLOSE_SHUTDOWN_REASON);
                        return Ok(session.stats());
                    }
                }
            }
        }
        .await;
        reader.abort();
        writer.abort();
        match result {
            Err(LinkError::Protocol(e)) => {
                connection.close(CLOSE_PROTOCOL.into(), b"protocol error");
                Err(LinkError::Protocol(e))
            }
            // The peer shut down in order (or this side closed): an end, not a failure.
            Err(LinkError::Connection(e)) => match connection.close_reason() {
                Some(quinn::ConnectionError::ApplicationClosed(c))
                    if c.error_code == quinn::VarInt::from_u32(net::CLOSE_SHUTDOWN)
                        || c.error_code == quinn::VarInt::from_u32(CLOSE_DUPLICATE) =>
                {
                    Ok(last)
                }
                Some(quinn::ConnectionError::LocallyClosed) => Ok(last),
                _ => Err(LinkError::Connection(e)),
            },
            other => other,
        }
    }

    /// Runs `f` on the session on the blocking pool (it reads and writes the store), with
    /// the room now left in the writer's queue `out` as its send budget.
    async fn step(
        &self,
        mut session: Session,
        out: &Outbox,
        f: impl FnOnce(&mut Session, &Store) -> Result<Vec<Message>, SessionError> + Send + 'static,
    ) -> Result<(Session, Vec<Message>), LinkError> {
        let store = self.store.clone();
        let room = out.room();
        let (session, out) = tokio::task::spawn_blocking(move || {
            session.set_send_budget(room);
            let out = f(&mut session, &store);
            (session, out)
        })
        .await
        .map_err(|e| LinkError::Local(format!("sync task failed: {e}")))?;
        (self.observe)(&session);
        match out {
            Ok(messages) => Ok((session, messages)),
            Err(
                e @ (SessionError::Wire(_) | SessionError::Protocol(_) | SessionError::NoHello(_)),
            ) => Err(LinkError::Protocol(e.to_string())),
            Err(e) => Err(LinkError::Local(e.to_string())),
        }
    }
}

async fn read_loop(mut recv: quinn::RecvStream, tx: mpsc::Sender<Result<Vec<u8>, LinkError>>) {
    loop {
        let message = match net::read_msg(&mut recv, MAX_MESSAGE).await {
            Ok(Some(b)) => Ok(b),
            Ok(None) => return,
            Err(e @ (net::NetError::FrameTooLarge { .. } | net::NetError::Truncated { .. })) => {
                Err(LinkError::Protocol(e.to_string()))
            }
            Err(e) => Err(LinkError::Connection(e.to_string())),
        };
        let end = message.is_err();
        if tx.send(message).await.is_err() || end {
            return;
        }
    }
}

/// The writer's queue: the messages, the bytes they hold, and the writer's word that it
/// drained below [`WRITE_QUEUE_LOW`].
struct Outbox {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl Outbox {
    /// Bytes of records the session may hand out now.
    fn room(&self) -> usize {
        WRITE_QUEUE_BYTES.saturating_sub(self.bytes.load(Ordering::SeqCst))
    }

    /// Queues `messages` for the writer.
    fn queue(&self, messages: Vec<Message>) -> Result<(), LinkError> {
        for m in messages {
            let bytes = m.encode();
            self.bytes.fetch_add(bytes.len(), Ordering::SeqCst);
            self.tx
                .send(bytes)
                .map_err(|_| LinkError::Connection("the writer stopped".into()))?;
        }
        Ok(())
    }
}

/// Writes what is queued, in order, until the queue closes or a write fails; says when the
/// queue has drained below [`WRITE_QUEUE_LOW`] (a permit is kept if nobody waits, so the
/// word is never lost).
async fn write_loop(
    mut send: quinn::SendStream,
    mut queued: mpsc::UnboundedReceiver<Vec<u8>>,
    held: Arc<AtomicUsize>,
    drained: Arc<Notify>,
) -> Result<(), LinkError> {
    while let Some(bytes) = queued.recv().await {
        net::write_msg(&mut send, &bytes)
            .await
            .map_err(|e| LinkError::Connection(e.to_string()))?;
        let before = held.fetch_sub(bytes.len(), Ordering::SeqCst);
        if before.saturating_sub(bytes.len()) <= WRITE_QUEUE_LOW {
            drained.notify_one();
        }
    }
    Ok(())
}
