//! Small helpers shared across modules.

/// The hasher of the layer's in-memory maps. Their keys (session ids, stream ids) are
/// made by the server from random bits, so a client cannot choose keys that collide, and
/// SipHash's flooding resistance buys nothing while costing several hashes per request.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// A concurrent map hashed with [`FastHash`].
pub(crate) type FastDashMap<K, V> = dashmap::DashMap<K, V, FastHash>;

/// A map hashed with [`FastHash`].
pub(crate) type FastHashMap<K, V> = std::collections::HashMap<K, V, FastHash>;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Write `bytes` as lowercase hex into `out`, which must be twice as long.
pub(crate) fn hex_encode(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
}

/// Write `n` in decimal into the end of `digits` and return the written part; no
/// allocation, for encoders that run per event.
pub(crate) fn format_decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// Round a wait up to whole seconds for `Retry-After`, never below one second.
pub(crate) fn retry_after_secs(wait: std::time::Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Run a short store step whose caller cannot wait (a `Drop`, a close listener): polled
/// once here, which finishes it for an in-memory backend, and otherwise handed to the
/// runtime; outside one it is said, not skipped silently.
pub(crate) fn run_detached(step: impl Future<Output = ()> + Send + 'static) {
    let mut step = Box::pin(step);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if step.as_mut().poll(&mut cx).is_ready() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(step);
    } else {
        #[cfg(feature = "tracing")]
        tracing::warn!("no Tokio runtime to finish a store step begun outside one");
    }
}

/// Run `futures` together; their outputs in the order given.
pub(crate) async fn join_all<F: Future + Unpin>(futures: Vec<F>) -> Vec<F::Output> {
    let mut running: Vec<Option<F>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<F::Output>> = running.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, output) in running.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match std::pin::Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn join_all_keeps_the_order_given() {
        let slow = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            1
        }) as std::pin::Pin<Box<dyn Future<Output = i32> + Send>>;
        let fast = Box::pin(async { 2 }) as std::pin::Pin<Box<dyn Future<Output = i32> + Send>>;
        assert_eq!(join_all(vec![slow, fast]).await, vec![1, 2]);
        assert!(join_all(Vec::<std::future::Ready<()>>::new()).await.is_empty());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }
}
