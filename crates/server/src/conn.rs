//! Client connections under attack or neglect: the descriptor budget (the soft limit raised at
//! start, a connection limit below it), idle connections closed, request bodies that stop
//! arriving failed with `RequestTimeout`, accept errors backed off, and error logs
//! rate-limited so a flood of failures cannot fill the disk with log lines.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vallum_types::limits::{MAX_CONNECTIONS, MAX_LOGGED_ERROR_BYTES, RESERVED_DESCRIPTORS};

/// First pause after a failed `accept`; doubled on each failure in a row.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(5);
/// Longest pause after failed `accept`s in a row.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// One line per this interval at most for a rate-limited message; the rest are counted.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Raises the soft descriptor limit to the hard limit; returns the soft limit now in force
/// (`None`: unlimited).
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard);
        if let Err(err) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%err, hard, "could not raise the descriptor limit to the hard limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// How many client connections to serve at once: `configured` (0: as many as possible), never
/// more than the descriptor limit allows after `RESERVED_DESCRIPTORS`, nor `MAX_CONNECTIONS`
/// when not configured. At least one.
#[must_use]
pub fn connection_budget(configured: usize, descriptors: Option<u64>) -> usize {
    let by_descriptors = descriptors.map_or(usize::MAX, |n| {
        usize::try_from(n.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX)
    });
    let wanted = if configured == 0 {
        MAX_CONNECTIONS
    } else {
        configured
    };
    wanted.min(by_descriptors).max(1)
}

/// What one connection is doing: when a byte last moved, and how many requests are in
/// progress. The connection's watchdog closes it once it has been idle too long.
#[derive(Debug)]
pub struct Activity {
    epoch: tokio::time::Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks a request in progress until the guard drops.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Resolves once the connection has had no request in progress and no byte moving for
    /// `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        loop {
            let quiet_ms = self
                .now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed));
            if quiet_ms >= idle_ms && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            let wait = idle_ms.saturating_sub(quiet_ms).max(idle_ms / 4).max(1);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

/// A request in progress on its connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket (or TLS stream) that records when bytes move through it.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    /// Wraps `inner`, reporting to `activity`.
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        activity.touch();
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that stopped arriving: no byte for the configured time.
#[derive(Debug, thiserror::Error)]
#[error("no request body data arrived for {0} s")]
pub struct BodyTimedOut(pub u64);

/// A request body that fails with `BodyTimedOut` when no data arrives for `timeout`.
pub struct TimedBody<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> http_body::Body for TimedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout.as_secs())))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (or one of its causes) is a request body that stopped arriving.
#[must_use]
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.get_ref().is_some_and(|inner| inner.is::<BodyTimedOut>())
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The pause before the next `accept` after `failures` failures in a row.
#[must_use]
pub fn accept_backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    ACCEPT_BACKOFF_START
        .saturating_mul(factor)
        .min(ACCEPT_BACKOFF_MAX)
}

/// A message logged at most once per `LOG_INTERVAL`; the lines left out are counted and the
/// count is given with the next line.
#[derive(Debug, Default)]
pub struct RateLimited {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    /// `Some(suppressed)` when a line may be written now (with how many were left out since
    /// the last), `None` when this one is to be left out.
    pub fn admit(&self) -> Option<u64> {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < LOG_INTERVAL => {
                st.1 += 1;
                None
            }
            _ => {
                let suppressed = st.1;
                *st = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

/// `text` cut to `MAX_LOGGED_ERROR_BYTES` (on a character boundary), saying how much was cut:
/// one log line never carries a whole request body.
#[must_use]
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_LOGGED_ERROR_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_LOGGED_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_stays_below_the_descriptor_limit() {
        // The field's case: 1,024 descriptors.
        assert_eq!(
            connection_budget(0, Some(1024)),
            1024 - usize::try_from(RESERVED_DESCRIPTORS).unwrap()
        );
        assert_eq!(connection_budget(100, Some(1024)), 100);
        assert_eq!(
            connection_budget(100_000, Some(1024)),
            1024 - usize::try_from(RESERVED_DESCRIPTORS).unwrap()
        );
        assert_eq!(connection_budget(0, Some(1 << 20)), MAX_CONNECTIONS);
        assert_eq!(connection_budget(0, None), MAX_CONNECTIONS);
        assert_eq!(connection_budget(0, Some(10)), 1);
    }

    #[test]
    fn the_descriptor_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, getrlimit};
        let soft = raise_descriptor_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(soft, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }

    #[test]
    fn accept_backoff_grows_and_is_capped() {
        assert_eq!(accept_backoff(1), ACCEPT_BACKOFF_START);
        assert_eq!(accept_backoff(2), ACCEPT_BACKOFF_START * 2);
        assert!(accept_backoff(5) > accept_backoff(4));
        assert_eq!(accept_backoff(40), ACCEPT_BACKOFF_MAX);
    }

    #[test]
    fn rate_limited_lines_are_counted() {
        let limited = RateLimited::default();
        assert_eq!(limited.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(limited.admit(), None);
        }
        // Pretend the interval passed.
        limited.state.lock().unwrap().0 = Some(Instant::now() - LOG_INTERVAL);
        assert_eq!(limited.admit(), Some(1000));
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        let long = "é".repeat(3_000_000);
        let cut = bounded(&long);
        assert!(cut.len() < MAX_LOGGED_ERROR_BYTES + 64);
        assert!(cut.ends_with("more bytes)"));
        assert_eq!(bounded("short"), "short");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_times_out() {
        use futures::StreamExt;
        use http_body_util::BodyExt;
        // One chunk, then a client that sends nothing more and never closes.
        let chunks = futures::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
            Bytes::from_static(b"first"),
        ))])
        .chain(futures::stream::pending());
        let body = http_body_util::StreamBody::new(chunks);
        let mut timed = TimedBody::new(body, Duration::from_millis(200));
        let first = timed.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"first"));
        // Nothing more arrives.
        let err = timed.frame().await.unwrap().unwrap_err();
        assert!(is_body_timeout(&*err), "{err}");
    }

    #[tokio::test]
    async fn idle_waits_for_requests_in_progress() {
        let idle_after = Duration::from_millis(200);
        let activity = Arc::new(Activity::default());
        let guard = activity.request();
        let idle = activity.idle_for(idle_after);
        tokio::pin!(idle);
        // A request in progress keeps the connection open however long it takes.
        assert!(
            tokio::time::timeout(idle_after * 5, &mut idle)
                .await
                .is_err()
        );
        drop(guard);
        tokio::time::timeout(idle_after * 5, &mut idle)
            .await
            .expect("idle once the request is done");
    }
}
