//! Connection guard in front of Pingora's HTTP/1 parser. Pingora's read
//! timeout applies per read, so a client sending one byte at a time could
//! hold a connection forever; here the first request head of a connection
//! must arrive whole within `header_timeout` of the accept, and no head may
//! exceed `max_header_bytes` (431) before Pingora buffers it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\ncontent-length: 86\r\nconnection: close\r\n\r\n{\"error\":\"request_header_fields_too_large\",\"error_description\":\"request head too large\"}";

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// Wraps the proxy app so that every accepted connection is guarded.
pub struct GuardedApp<A> {
    pub inner: Arc<A>,
    pub limits: HeadLimits,
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = if stream.as_any().is::<HeadGuard>() {
            stream
        } else {
            // A fresh connection goes to Pingora once its first bytes are
            // here: Pingora drops a connection whose request has not
            // arrived when shutdown begins, which in a graceful upgrade
            // would reset a client that the old process had just accepted.
            let mut stream = stream;
            let mut first = [0u8; 1];
            match tokio::time::timeout(self.limits.timeout, stream.try_peek(&mut first)).await {
                Ok(Ok(_)) => {}
                // closed, failed or silent past the head deadline
                _ => return None,
            }
            Box::new(HeadGuard::new(stream, self.limits))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

enum Phase {
    /// Reading the first head: bytes seen so far, the last three of them.
    Head {
        seen: usize,
        tail: [u8; 3],
    },
    Passthrough,
    Failed,
}

pub struct HeadGuard {
    inner: Stream,
    limits: HeadLimits,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HeadGuard {
    fn new(inner: Stream, limits: HeadLimits) -> Self {
        HeadGuard {
            inner,
            limits,
            phase: Phase::Head {
                seen: 0,
                tail: [0; 3],
            },
            deadline: Box::pin(tokio::time::sleep(limits.timeout)),
        }
    }

    /// Scan newly read bytes; returns Err when the head is too large.
    fn scan(&mut self, new: &[u8]) -> Result<(), ()> {
        let Phase::Head { seen, tail } = &mut self.phase else {
            return Ok(());
        };
        for (i, b) in new.iter().enumerate() {
            if tail == b"\r\n\r" && *b == b'\n' {
                if *seen + i + 1 > self.limits.max_bytes {
                    return Err(());
                }
                self.phase = Phase::Passthrough;
                return Ok(());
            }
            *tail = [tail[1], tail[2], *b];
        }
        *seen += new.len();
        if *seen > self.limits.max_bytes {
            return Err(());
        }
        Ok(())
    }

    /// Best effort: the socket buffer of a fresh connection takes this
    /// small answer at once; if not, the client just sees the close.
    fn refuse_too_large(&mut self, cx: &mut Context<'_>) {
        let _ = Pin::new(&mut self.inner).poll_write(cx, TOO_LARGE);
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.phase {
            Phase::Passthrough => return Pin::new(&mut this.inner).poll_read(cx, buf),
            Phase::Failed => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head refused",
                )))
            }
            Phase::Head { .. } => {}
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.phase = Phase::Failed;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received within header_timeout",
            )));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            let new = buf.filled()[before..].to_vec();
            if this.scan(&new).is_err() {
                this.phase = Phase::Failed;
                this.refuse_too_large(cx);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head larger than max_header_bytes",
                )));
            }
        }
        res
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, d: pingora::protocols::SocketDigest) {
        self.inner.set_socket_digest(d)
    }
}

#[async_trait]
impl Peek for HeadGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
