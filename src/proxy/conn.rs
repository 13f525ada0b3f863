//! Connection guard in front of Pingora's HTTP/1 parser: every request head
//! of a connection, first or later, must arrive whole within
//! `header_timeout` of its first byte (408) and within `max_header_bytes`
//! (431) before Pingora buffers it; a head Pingora refuses itself gets the
//! gateway's JSON refusal.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use prometheus::IntCounterVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What a refused head is answered with: the JSON body every refusal of
/// the gateway carries, a request id, and a closed connection.
fn refusal(status: &str, code: &str, description: &str) -> Vec<u8> {
    let body = format!(r#"{{"error":"{code}","error_description":"{description}"}}"#);
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nx-request-id: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        super::forward::new_request_id().to_str().unwrap_or_default(),
        body.len()
    )
    .into_bytes()
}

#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// What one proxy listener does with a new connection before HTTP.
pub struct ListenerRuntime {
    /// The `listener` label of the TLS metrics: its configured address.
    pub name: String,
    pub tls: Option<Arc<crate::tls::TlsAcceptor>>,
    /// HTTP/2: by ALPN on TLS, with prior knowledge (h2c) on plain.
    pub http2: bool,
}

/// Wraps the proxy app so that every accepted connection is guarded, and
/// TLS is terminated on the listeners that have it.
pub struct GuardedApp<A> {
    pub inner: Arc<A>,
    pub limits: HeadLimits,
    /// By local port.
    pub listeners: HashMap<u16, ListenerRuntime>,
    /// `tollgate_client_errors_total`: heads cut for time or size, or left
    /// unfinished by the client.
    pub client_errors: IntCounterVec,
    /// `tollgate_tls_handshake_failures_total{listener, reason}`.
    pub tls_failures: IntCounterVec,
}

/// The whole HTTP/2 connection preface (RFC 9113 §3.4).
pub(super) const H2_CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection opens with the HTTP/2 preface. Pingora's
/// peek waits for as many bytes as it is asked for, so the preface is
/// compared a byte at a time: an HTTP/1 request (`POST`, `PUT`) differs by
/// its second byte and is never waited on for bytes it did not send.
async fn opens_with_h2_preface(stream: &mut Stream) -> bool {
    let mut buf = [0u8; H2_CLIENT_PREFACE.len()];
    for n in 2..=buf.len() {
        match stream.try_peek(&mut buf[..n]).await {
            Ok(true) if buf[..n] == H2_CLIENT_PREFACE[..n] => {}
            _ => return false,
        }
    }
    true
}

impl<A> GuardedApp<A> {
    fn listener_of(&self, stream: &Stream) -> Option<&ListenerRuntime> {
        let port = stream.get_socket_digest()?.local_addr()?.as_inet()?.port();
        self.listeners.get(&port)
    }

    /// The TLS handshake, bounded by the head timeout; a failure is
    /// counted and logged at debug level (it is the client's).
    async fn accept_tls(
        &self,
        acceptor: &crate::tls::TlsAcceptor,
        stream: Stream,
    ) -> Option<crate::tls::TlsConn> {
        let accept = tokio_rustls::TlsAcceptor::from(acceptor.current()).accept(stream);
        let failure = match tokio::time::timeout(self.limits.timeout, accept).await {
            Ok(Ok(tls)) => return Some(crate::tls::TlsConn::new(tls)),
            Ok(Err(e)) => {
                let reason = crate::tls::failure_reason(&e);
                tracing::debug!(listener = %acceptor.name, error = %e, reason, "TLS handshake failed");
                reason
            }
            Err(_) => "timeout",
        };
        self.tls_failures
            .with_label_values(&[acceptor.name.as_str(), failure])
            .inc();
        None
    }
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
            let listener = self.listener_of(&stream);
            let h2c = match listener {
                Some(l) if l.http2 && l.tls.is_none() && first[0] == H2_CLIENT_PREFACE[0] => {
                    tokio::time::timeout(self.limits.timeout, opens_with_h2_preface(&mut stream))
                        .await
                        .ok()?
                }
                _ => false,
            };
            match listener.and_then(|l| l.tls.as_ref()) {
                Some(acceptor) => {
                    let conn = self.accept_tls(acceptor, stream).await?;
                    if matches!(conn.selected_alpn_proto(), Some(ALPN::H2)) {
                        // HTTP/2 frames its own requests: only its control
                        // frames are watched
                        Box::new(HeadGuard::h2(
                            Box::new(conn),
                            self.limits,
                            self.client_errors.clone(),
                            false,
                        ))
                    } else {
                        Box::new(HeadGuard::new(
                            Box::new(conn),
                            self.limits,
                            self.client_errors.clone(),
                        ))
                    }
                }
                None if h2c => Box::new(HeadGuard::h2(
                    stream,
                    self.limits,
                    self.client_errors.clone(),
                    true,
                )),
                None => Box::new(HeadGuard::new(
                    stream,
                    self.limits,
                    self.client_errors.clone(),
                )),
            }
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\n";

const NO_SIGNAL: u8 = 0;
const HEAD_RECEIVED: u8 = 1;
const EXPECT_HEAD: u8 = 2;

enum Phase {
    /// Reading a head: bytes seen so far, the last three of them, when
    /// its first byte came, and the timer for its deadline (set only when
    /// a read has to wait in the middle of a head: a head that arrives
    /// whole, the usual case, never touches the timer wheel).
    Head {
        seen: usize,
        tail: [u8; 3],
        started: Option<Instant>,
        timer: Option<Pin<Box<Sleep>>>,
    },
    /// A head's bytes are all here and Pingora is parsing it: reads pass,
    /// and a write before the proxy has the head can only be Pingora
    /// refusing it.
    HeadRead,
    Passthrough,
    /// A head was refused; the refusal is being written, then nothing.
    Refused {
        answer: Vec<u8>,
        written: usize,
    },
}

/// The stream of one proxy connection, guarding each request head in turn:
/// Pingora's read timeout applies per read, so a client sending one byte at
/// a time could hold a connection forever. The proxy tells the guard when a
/// head was parsed (`head_received`) and when the next one is expected
/// (`expect_head`); in between, bytes pass untouched. While it waits for
/// the next head, the guard also ends a connection idle for longer than
/// `keepalive_timeout`.
pub struct HeadGuard {
    inner: Stream,
    limits: HeadLimits,
    phase: Phase,
    /// How long a kept-alive connection may wait for its next request, in
    /// milliseconds: set with `expect_head`, applied with it.
    idle_ms: AtomicU64,
    /// When the connection waiting for its next head is idle for too long.
    idle_deadline: Option<Instant>,
    /// One timer for all the idle waits of the connection. It is armed at
    /// some deadline no later than the current one, and moved on only when
    /// it fires early: a request ends the idle wait without touching the
    /// timer, so a busy connection does not register a timer per request.
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// The proxy's latest word (it holds only a shared reference), applied
    /// by the next read or write: the latest wins, since a head pipelined
    /// behind an answer is received without a read in between.
    signal: AtomicU8,
    client_errors: IntCounterVec,
    /// HTTP/2 with prior knowledge on a plain connection.
    h2c: bool,
    /// On an HTTP/2 connection: its control frames, counted.
    frames: Option<super::h2_frames::FrameCounter>,
    /// An upgraded connection's end, thrown when its credential is revoked.
    kill: std::sync::OnceLock<Arc<crate::live::KillSwitch>>,
}

impl std::fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HeadGuard {
    fn new(inner: Stream, limits: HeadLimits, client_errors: IntCounterVec) -> Self {
        HeadGuard {
            inner,
            limits,
            // the first head's clock starts now: its first byte is here
            phase: Phase::Head {
                seen: 0,
                tail: [0; 3],
                started: Some(Instant::now()),
                timer: None,
            },
            signal: AtomicU8::new(NO_SIGNAL),
            idle_ms: AtomicU64::new(0),
            idle_deadline: None,
            idle_timer: None,
            client_errors,
            h2c: false,
            frames: None,
            kill: std::sync::OnceLock::new(),
        }
    }

    /// Ends this connection when `switch` is thrown.
    pub fn end_on(&self, switch: Arc<crate::live::KillSwitch>) {
        let _ = self.kill.set(switch);
    }

    fn ended(&self, cx: &mut Context<'_>) -> bool {
        match self.kill.get() {
            Some(k) if k.killed() => true,
            Some(k) => {
                k.watch(cx.waker());
                false
            }
            None => false,
        }
    }

    /// A plain connection that opened with the HTTP/2 preface: its bytes
    /// pass untouched, and Pingora is told to speak HTTP/2.
    /// An HTTP/2 connection (`h2c`: in clear, with prior knowledge): no
    /// heads to guard; its SETTINGS and PING frames are counted, since the
    /// HTTP/2 library answers every one of them however many come.
    fn h2(inner: Stream, limits: HeadLimits, client_errors: IntCounterVec, h2c: bool) -> Self {
        HeadGuard {
            phase: Phase::Passthrough,
            h2c,
            frames: Some(super::h2_frames::FrameCounter::default()),
            ..HeadGuard::new(inner, limits, client_errors)
        }
    }

    /// The guard of a proxy session's connection, if it has one (an HTTP/2
    /// stream has none of its own).
    pub fn of(session: &pingora::protocols::http::ServerSession) -> Option<&HeadGuard> {
        session.stream()?.as_any().downcast_ref::<HeadGuard>()
    }

    /// Pingora parsed the head: what follows is body or the next request.
    pub fn head_received(&self) {
        self.signal.store(HEAD_RECEIVED, Ordering::Release);
    }

    /// The connection is kept for another request: guard its head, and end
    /// the connection if none starts within `idle`.
    pub fn expect_head(&self, idle: Duration) {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        self.idle_ms.store(ms, Ordering::Relaxed);
        self.signal.store(EXPECT_HEAD, Ordering::Release);
    }

    fn apply_signals(&mut self) {
        match self.signal.swap(NO_SIGNAL, Ordering::AcqRel) {
            HEAD_RECEIVED if !matches!(self.phase, Phase::Refused { .. }) => {
                self.phase = Phase::Passthrough;
            }
            EXPECT_HEAD if matches!(self.phase, Phase::Passthrough) => {
                self.phase = Phase::Head {
                    seen: 0,
                    tail: [0; 3],
                    started: None,
                    timer: None,
                };
                let idle = Duration::from_millis(self.idle_ms.load(Ordering::Relaxed));
                self.idle_deadline = Instant::now().checked_add(idle);
            }
            _ => {}
        }
    }

    fn refuse(&mut self, reason: &str, answer: Vec<u8>) {
        self.client_errors.with_label_values(&[reason]).inc();
        self.phase = Phase::Refused { answer, written: 0 };
    }

    /// Scan newly read bytes of a head; Err when the head is too large.
    fn scan(&mut self, new: &[u8]) -> Result<(), ()> {
        let Phase::Head { seen, tail, .. } = &mut self.phase else {
            return Ok(());
        };
        match head_end(tail, new) {
            Some(end) => {
                if *seen + end > self.limits.max_bytes {
                    return Err(());
                }
                // The HTTP/2 preface looks like a head; what follows is
                // frames, and no more heads.
                self.phase = if *seen == 0 && new.starts_with(H2_PREFACE) {
                    Phase::Passthrough
                } else {
                    Phase::HeadRead
                };
                Ok(())
            }
            None => {
                *seen += new.len();
                if *seen > self.limits.max_bytes {
                    return Err(());
                }
                Ok(())
            }
        }
    }

    /// Writes what is left of a refusal; Ready once all of it is out (or
    /// the client is gone).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Phase::Refused { answer, written } = &mut self.phase else {
            return Poll::Ready(());
        };
        while *written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(n)) if n > 0 => *written += n,
                Poll::Ready(_) => {
                    *written = answer.len();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(())
    }
}

/// Where in `new` a head ends (the length up to and including the end),
/// given `tail`, the last three bytes read before it: the end is CRLF CRLF,
/// or a bare-LF form a lenient parser accepts (LF LF, LF CR LF). Without an
/// end, `tail` becomes the last three bytes read. Only line ends are looked
/// at, found with `memchr`: a head has a few lines and many more bytes.
fn head_end(tail: &mut [u8; 3], new: &[u8]) -> Option<usize> {
    // the byte `back` places before new[i], from `new` or the earlier tail
    let before = |i: usize, back: usize| {
        if i >= back {
            new[i - back]
        } else {
            tail[3 + i - back]
        }
    };
    for i in memchr::memchr_iter(b'\n', new) {
        let (p1, p2) = (before(i, 1), before(i, 2));
        if p1 == b'\n' || (p2 == b'\n' && p1 == b'\r') {
            return Some(i + 1);
        }
    }
    let n = new.len();
    let last = [before(n, 3), before(n, 2), before(n, 1)];
    *tail = last;
    None
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.apply_signals();
        if this.ended(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the credential behind this connection was revoked",
            )));
        }
        match &this.phase {
            Phase::Passthrough | Phase::HeadRead => {
                let before = buf.filled().len();
                let res = Pin::new(&mut this.inner).poll_read(cx, buf);
                if let (Some(frames), Poll::Ready(Ok(()))) = (this.frames.as_mut(), &res) {
                    if frames.feed(&buf.filled()[before..]).is_err() {
                        this.client_errors.with_label_values(&["h2_flood"]).inc();
                        tracing::debug!("HTTP/2 control-frame flood: closing the connection");
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "HTTP/2 SETTINGS or PING flood",
                        )));
                    }
                }
                return res;
            }
            Phase::Refused { .. } => {
                // the refusal goes out before the read fails and Pingora
                // closes the connection
                if this.poll_refusal(cx).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head refused",
                )));
            }
            Phase::Head { .. } => {}
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        match &res {
            Poll::Ready(Ok(())) if got == 0 => {
                if let Phase::Head { seen, .. } = &this.phase {
                    if *seen > 0 {
                        // the client closed in the middle of a head
                        this.client_errors
                            .with_label_values(&["closed_mid_head"])
                            .inc();
                    }
                }
                return res;
            }
            Poll::Ready(Ok(())) => {
                if let Phase::Head { started, .. } = &mut this.phase {
                    started.get_or_insert_with(Instant::now);
                }
                if this.scan(&buf.filled()[before..]).is_err() {
                    buf.set_filled(before);
                    this.refuse(
                        "header_too_large",
                        refusal(
                            "431 Request Header Fields Too Large",
                            "request_header_fields_too_large",
                            "request head too large",
                        ),
                    );
                    return this.poll_read_refused(cx);
                }
            }
            Poll::Ready(Err(_)) => return res,
            Poll::Pending => {}
        }
        if res.is_pending() && this.idle_expired(cx) {
            // no request came in time: the connection ends as if the
            // client had closed it, with nothing counted against the client
            return Poll::Ready(Ok(()));
        }
        // still within a head: has its time run out?
        let timeout = this.limits.timeout;
        let expired = match &mut this.phase {
            Phase::Head {
                started: Some(started),
                timer,
                ..
            } => timer
                .get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until((*started + timeout).into()))
                })
                .as_mut()
                .poll(cx)
                .is_ready(),
            _ => false,
        };
        if expired {
            buf.set_filled(before);
            this.refuse(
                "header_timeout",
                refusal(
                    "408 Request Timeout",
                    "request_timeout",
                    "request head not received within header_timeout",
                ),
            );
            return this.poll_read_refused(cx);
        }
        res
    }
}

impl HeadGuard {
    /// Waiting for the next head and none of its bytes here yet: has the
    /// connection been idle for longer than it may?
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let (Phase::Head { started: None, .. }, Some(deadline)) = (&self.phase, self.idle_deadline)
        else {
            return false;
        };
        let timer = self
            .idle_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        // armed for an earlier wait, it fires early once: then on to this
        // wait's deadline (the timer rounds deadlines up, so it never fires
        // before one; should it, the read is simply polled again)
        for _ in 0..2 {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                return true;
            }
            timer.as_mut().reset(deadline.into());
        }
        cx.waker().wake_by_ref();
        false
    }

    fn poll_read_refused(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_refusal(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request head refused",
        )))
    }

    /// Pingora writes during a head only to refuse it (a malformed head, or
    /// CONNECT), with an empty body and no request id: the client gets the
    /// gateway's own JSON refusal instead.
    fn poll_write_during_head(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        first: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Phase::Head { .. } | Phase::HeadRead = self.phase {
            let answer = if first.starts_with(b"HTTP/1.1 405") {
                refusal(
                    "405 Method Not Allowed",
                    "method_not_allowed",
                    "CONNECT is not supported",
                )
            } else {
                refusal("400 Bad Request", "bad_request", "malformed request head")
            };
            self.refuse("malformed_head", answer);
        }
        match self.poll_refusal(cx) {
            Poll::Pending => Poll::Pending,
            // what Pingora wrote is taken as written
            Poll::Ready(()) => Poll::Ready(Ok(len)),
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.apply_signals();
        if this.kill.get().is_some_and(|k| k.killed()) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the credential behind this connection was revoked",
            )));
        }
        if let Phase::Passthrough = this.phase {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.poll_write_during_head(cx, buf.len(), buf)
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
        let this = &mut *self;
        this.apply_signals();
        if let Phase::Passthrough = this.phase {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let len = bufs.iter().map(|b| b.len()).sum();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        this.poll_write_during_head(cx, len, first)
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

impl Ssl for HeadGuard {
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        if self.h2c {
            return Some(ALPN::H2);
        }
        self.inner.selected_alpn_proto()
    }
}

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

#[cfg(test)]
mod tests {
    use super::head_end;

    /// Where a head ends, byte by byte: the reference `head_end` must agree with.
    fn naive_end(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find_map(|i| {
            let end = bytes[i] == b'\n'
                && ((i >= 1 && bytes[i - 1] == b'\n')
                    || (i >= 2 && bytes[i - 2] == b'\n' && bytes[i - 1] == b'\r'));
            end.then_some(i + 1)
        })
    }

    /// Feeds `bytes` in the pieces `cuts` makes; the end's offset in `bytes`.
    fn fed(bytes: &[u8], cuts: &[usize]) -> Option<usize> {
        let mut tail = [0u8; 3];
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            if let Some(end) = head_end(&mut tail, &bytes[start..cut]) {
                return Some(start + end);
            }
            start = cut;
        }
        None
    }

    #[test]
    fn a_head_ends_where_a_byte_by_byte_scan_says_however_it_is_split() {
        let heads: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\nrest",
            b"GET / HTTP/1.1\r\nHost: a\n\r\nbody",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"\n\n",
            b"",
        ];
        for head in heads {
            let (want, shown) = (naive_end(head), String::from_utf8_lossy(head));
            assert_eq!(fed(head, &[]), want, "{shown:?} whole");
            for a in 0..=head.len() {
                assert_eq!(fed(head, &[a]), want, "{shown:?} cut at {a}");
                for b in a..=head.len() {
                    assert_eq!(fed(head, &[a, b]), want, "{shown:?} cut at {a}, {b}");
                }
            }
        }
    }
}
