use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_channel::oneshot;

use crate::StorageError;

/// The answer to one store request. Awaitable from any executor: the store thread wakes the
/// waiting task when it sends. A store thread that stopped before answering yields `Closed`.
#[must_use = "a store request's outcome is only known by awaiting its reply"]
pub struct Reply<T> {
    rx: oneshot::Receiver<Result<T, StorageError>>,
    path: std::sync::Arc<str>,
}

pub(crate) type Responder<T> = oneshot::Sender<Result<T, StorageError>>;

impl<T> Reply<T> {
    pub(crate) fn pair(path: std::sync::Arc<str>) -> (Responder<T>, Reply<T>) {
        let (tx, rx) = oneshot::channel();
        (tx, Reply { rx, path })
    }

    /// A reply that is already decided, for requests refused before reaching the store thread.
    pub(crate) fn ready(path: std::sync::Arc<str>, value: Result<T, StorageError>) -> Reply<T> {
        let (tx, reply) = Reply::pair(path);
        let _ = tx.send(value);
        reply
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(v)) => Poll::Ready(v),
            Poll::Ready(Err(_)) => Poll::Ready(Err(StorageError::Closed { path: self.path.to_string() })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The two completions of one append.
pub struct AppendTicket {
    /// Committed and handed to the OS: survives a process kill.
    pub written: Reply<()>,
    /// Synced as the fsync policy requires: survives power loss (for `Fsync::Os`, same as
    /// `written`).
    pub durable: Reply<()>,
}
