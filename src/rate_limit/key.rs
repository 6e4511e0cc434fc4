//! Keys: what a per-key quota counts against, and the extractors that find them.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::Extensions;
use http::request::Parts;
use ipnet::IpNet;

use super::forwarded::{self, Syntax};
use crate::Principal;

/// What a per-key quota counts against: one bucket per distinct key.
///
/// ```
/// use tower_mcp_session::rate_limit::RateLimitKey;
///
/// let a = RateLimitKey::from("tenant-1");
/// assert_eq!(a, RateLimitKey::Text("tenant-1".into()));
/// assert_ne!(a, RateLimitKey::from("tenant-2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitKey {
    /// A client address (the built-in IP extractors have already masked it to its
    /// prefix).
    Ip(IpAddr),
    /// An authenticated principal.
    Principal(Principal),
    /// Any text: an API key id, a tenant, a header value.
    Text(Arc<str>),
    /// Any number: a tenant or account id.
    Number(u64),
}

impl From<IpAddr> for RateLimitKey {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl From<Principal> for RateLimitKey {
    fn from(principal: Principal) -> Self {
        Self::Principal(principal)
    }
}

impl From<&str> for RateLimitKey {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<String> for RateLimitKey {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

impl From<u64> for RateLimitKey {
    fn from(n: u64) -> Self {
        Self::Number(n)
    }
}

/// Finds the key a session-creating request counts against.
///
/// Returning `None` means no key could be found; such requests share one bucket of their
/// own (see [`CreationLimit::per_key`](super::CreationLimit::per_key)). Closures
/// `Fn(&Parts) -> Option<RateLimitKey>` are extractors:
///
/// ```
/// use std::num::NonZeroU32;
/// use tower_mcp_session::rate_limit::{CreationLimit, Quota, RateLimitKey};
///
/// // One bucket per API key id, sent by the client in a header.
/// let limit = CreationLimit::new().per_key(
///     Quota::per_minute(NonZeroU32::new(10).unwrap()),
///     |parts: &http::request::Parts| {
///         let id = parts.headers.get("x-api-key-id")?.to_str().ok()?;
///         Some(RateLimitKey::from(id))
///     },
/// );
/// # let _ = limit;
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key for this request, or `None` when none can be found.
    fn extract(&self, parts: &Parts) -> Option<RateLimitKey>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&Parts) -> Option<RateLimitKey> + Send + Sync + 'static,
{
    fn extract(&self, parts: &Parts) -> Option<RateLimitKey> {
        self(parts)
    }
}

/// The address of the connection's other end, in the request extensions.
///
/// The built-in IP extractors look for this first, then for a bare
/// [`SocketAddr`]. With plain hyper, insert it when serving each connection:
///
/// ```
/// use std::net::SocketAddr;
/// use tower_mcp_session::rate_limit::PeerAddr;
///
/// let peer: SocketAddr = "203.0.113.9:50000".parse().unwrap();
/// // Inside the per-connection `service_fn`:
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(PeerAddr(peer));
/// ```
///
/// With axum and the `axum` feature, `ConnectInfo<SocketAddr>` is read too: serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`. Without the feature, see
/// [`PeerIp::peer_addr_with`]. A keyed limit that finds no address logs a warning once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

type PeerFn = dyn Fn(&Extensions) -> Option<IpAddr> + Send + Sync;

/// How the built-in IP extractors find the peer address and group addresses.
#[derive(Clone)]
struct IpSource {
    peer: Option<Arc<PeerFn>>,
    ipv6_prefix: u8,
}

impl Default for IpSource {
    fn default() -> Self {
        Self {
            peer: None,
            ipv6_prefix: 64,
        }
    }
}

impl IpSource {
    /// The peer address, canonical (an IPv4-mapped IPv6 address is IPv4).
    fn peer(&self, extensions: &Extensions) -> Option<IpAddr> {
        let ip = match &self.peer {
            Some(f) => f(extensions),
            None => default_peer(extensions),
        };
        if ip.is_none() {
            warn_no_peer_address();
        }
        ip.map(|ip| ip.to_canonical())
    }

    fn key(&self, ip: IpAddr) -> RateLimitKey {
        RateLimitKey::Ip(mask(ip, self.ipv6_prefix))
    }
}

/// Where the peer address is without configuration: [`PeerAddr`], then a bare
/// [`SocketAddr`], then (feature `axum`) axum's `ConnectInfo<SocketAddr>`.
fn default_peer(extensions: &Extensions) -> Option<IpAddr> {
    let ip = extensions
        .get::<PeerAddr>()
        .map(|p| p.0.ip())
        .or_else(|| extensions.get::<SocketAddr>().map(SocketAddr::ip));
    #[cfg(feature = "axum")]
    let ip = ip.or_else(|| {
        extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    });
    ip
}

/// Without a peer address every client falls in the one unkeyed bucket, so one client
/// can use up everyone's quota: a wiring mistake that nothing else reports. Said once
/// per process, as it is the same mistake on every request.
fn warn_no_peer_address() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            "a creation limit keyed by peer address found no peer address in the request \
             extensions, so all such requests share one bucket; insert rate_limit::PeerAddr \
             per connection (axum: serve with into_make_service_with_connect_info::<SocketAddr>() \
             and enable the `axum` feature), or use PeerIp::peer_addr_with"
        );
    });
}

/// Group an address with its neighbours: IPv6 to `ipv6_prefix` bits, because one
/// subscriber usually holds a whole /64 and can pick any address in it; IPv4 stays
/// whole. `ip` must be canonical.
fn mask(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            // `checked_shl` is `None` for a shift of 128, i.e. a /0 prefix: keep nothing.
            let keep = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// The key is the connection's peer address: right when clients connect directly.
///
/// The address comes from [`PeerAddr`] or a bare [`SocketAddr`] in the request
/// extensions, axum's `ConnectInfo<SocketAddr>` (feature `axum`), or from
/// [`peer_addr_with`](Self::peer_addr_with). When there is none, the request gets no
/// key, and a warning is logged once. IPv6 addresses are
/// grouped by their /64 (see [`ipv6_prefix`](Self::ipv6_prefix)); IPv4-mapped IPv6
/// addresses count as IPv4. A request with no peer address gets no key.
///
/// ```
/// use tower_mcp_session::rate_limit::{PeerAddr, PeerIp, KeyExtractor, RateLimitKey};
///
/// let (mut parts, ()) = http::Request::new(()).into_parts();
/// parts.extensions.insert(PeerAddr("[2001:db8:1:2:3:4:5:6]:443".parse().unwrap()));
/// let key = PeerIp::new().extract(&parts);
/// assert_eq!(key, Some(RateLimitKey::Ip("2001:db8:1:2::".parse().unwrap())));
/// ```
#[derive(Clone, Default)]
pub struct PeerIp {
    source: IpSource,
}

impl PeerIp {
    /// Key by peer address, IPv6 grouped by /64.
    pub fn new() -> Self {
        Self::default()
    }

    /// Group IPv6 addresses by their first `bits` bits (default 64; values above 128
    /// count as 128, which keys every address on its own).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.source.ipv6_prefix = bits.min(128);
        self
    }

    /// Read the peer address with `f` instead of looking for [`PeerAddr`] or
    /// [`SocketAddr`].
    ///
    /// This is how axum's `ConnectInfo` is used, with no middleware in between:
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    /// use tower_mcp_session::rate_limit::PeerIp;
    ///
    /// // Serve with `app.into_make_service_with_connect_info::<SocketAddr>()`.
    /// let peer_ip = PeerIp::new()
    ///     .peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    /// # let _ = peer_ip;
    /// ```
    pub fn peer_addr_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.source.peer = Some(Arc::new(f));
        self
    }
}

impl KeyExtractor for PeerIp {
    fn extract(&self, parts: &Parts) -> Option<RateLimitKey> {
        self.source.peer(&parts.extensions).map(|ip| self.source.key(ip))
    }
}

impl fmt::Debug for PeerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIp")
            .field("ipv6_prefix", &self.source.ipv6_prefix)
            .finish_non_exhaustive()
    }
}

/// The key is the client address reported by trusted reverse proxies.
///
/// Proxies append the address they received a request from to the *right* end of
/// `X-Forwarded-For` (or `Forwarded`), so the entries on the left are whatever the
/// client chose to send. This extractor believes the header only when the peer address
/// is in `trusted_proxies`, then walks it from the right past trusted proxies; the first
/// address that is not a trusted proxy is the key. A client can therefore not pick its
/// own bucket by sending made-up entries.
///
/// - Peer not trusted (or a direct connection): the key is the peer address, headers
///   ignored.
/// - Every entry trusted: the leftmost one (the peer itself when there is no header,
///   e.g. a health check from the proxy).
/// - The walk cannot continue (`unknown`, an obfuscated `_name`, garbage): the last
///   trusted address reached, so such clients share that proxy's bucket.
/// - No peer address: no key (the shared unkeyed bucket).
///
/// Several header lines are read as one list, in order. The work is bounded: only the
/// last 4096 bytes of each line and the last 32 entries overall are read; a walk that
/// reaches either bound stops at the last trusted address.
///
/// Read only the header your proxies write: a `Forwarded` header that your proxy
/// passes through untouched is entirely client-written. Give IPv4 ranges as IPv4
/// (`10.0.0.0/8`); IPv4-mapped IPv6 peers and entries are compared as IPv4. The ranges
/// are searched in order, so keep the list short. Addresses are grouped as with
/// [`PeerIp`].
///
/// ```
/// use tower_mcp_session::rate_limit::{ForwardedIp, KeyExtractor, PeerAddr, RateLimitKey};
///
/// let xff = ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap()]);
///
/// let (mut parts, ()) = http::Request::builder()
///     .header("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.7")
///     .body(())
///     .unwrap()
///     .into_parts();
/// parts.extensions.insert(PeerAddr("10.0.0.2:4000".parse().unwrap()));
/// // `1.1.1.1` was written by the client; `203.0.113.9` by our proxy at 10.0.0.7.
/// assert_eq!(xff.extract(&parts), Some(RateLimitKey::Ip("203.0.113.9".parse().unwrap())));
/// ```
#[derive(Clone)]
pub struct ForwardedIp {
    trusted: Arc<[IpNet]>,
    syntax: Syntax,
    source: IpSource,
}

impl ForwardedIp {
    /// Read `X-Forwarded-For`, trusting proxies in `trusted_proxies`.
    pub fn x_forwarded_for(trusted_proxies: impl IntoIterator<Item = IpNet>) -> Self {
        Self::with_syntax(trusted_proxies, Syntax::XForwardedFor)
    }

    /// Read RFC 7239 `Forwarded` (its `for=` parameters), trusting proxies in
    /// `trusted_proxies`.
    ///
    /// ```
    /// use tower_mcp_session::rate_limit::{ForwardedIp, KeyExtractor, PeerAddr, RateLimitKey};
    ///
    /// let fwd = ForwardedIp::forwarded(["10.0.0.0/8".parse().unwrap()]);
    /// let (mut parts, ()) = http::Request::builder()
    ///     .header("forwarded", r#"for="[2001:db8:cafe::17]:4711";proto=https"#)
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// parts.extensions.insert(PeerAddr("10.0.0.2:4000".parse().unwrap()));
    /// assert_eq!(fwd.extract(&parts), Some(RateLimitKey::Ip("2001:db8:cafe::".parse().unwrap())));
    /// ```
    pub fn forwarded(trusted_proxies: impl IntoIterator<Item = IpNet>) -> Self {
        Self::with_syntax(trusted_proxies, Syntax::Forwarded)
    }

    fn with_syntax(trusted_proxies: impl IntoIterator<Item = IpNet>, syntax: Syntax) -> Self {
        Self {
            // Trusted ranges hold IPv4 as IPv4; addresses are compared in canonical form.
            trusted: trusted_proxies.into_iter().map(|net| net.trunc()).collect(),
            syntax,
            source: IpSource::default(),
        }
    }

    /// Group IPv6 addresses by their first `bits` bits (default 64; values above 128
    /// count as 128).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.source.ipv6_prefix = bits.min(128);
        self
    }

    /// Read the peer address with `f`, as [`PeerIp::peer_addr_with`].
    pub fn peer_addr_with<F>(mut self, f: F) -> Self
    where
        F: Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.source.peer = Some(Arc::new(f));
        self
    }
}

impl KeyExtractor for ForwardedIp {
    fn extract(&self, parts: &Parts) -> Option<RateLimitKey> {
        let peer = self.source.peer(&parts.extensions)?;
        let client = if forwarded::is_trusted(peer, &self.trusted) {
            forwarded::client_ip(&parts.headers, self.syntax, peer, &self.trusted)
        } else {
            peer
        };
        Some(self.source.key(client))
    }
}

impl fmt::Debug for ForwardedIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedIp")
            .field("trusted", &self.trusted)
            .field("syntax", &self.syntax)
            .field("ipv6_prefix", &self.source.ipv6_prefix)
            .finish_non_exhaustive()
    }
}

/// The key is the [`Principal`] an authentication layer put in the extensions.
///
/// Requests without one get no key, so they share one bucket. To give anonymous
/// clients per-address buckets instead, chain extractors in a closure:
///
/// ```
/// use tower_mcp_session::Principal;
/// use tower_mcp_session::rate_limit::{KeyExtractor, PeerIp, PrincipalKey, RateLimitKey};
///
/// let by_ip = PeerIp::new();
/// let key = move |parts: &http::request::Parts| PrincipalKey.extract(parts).or_else(|| by_ip.extract(parts));
///
/// let (mut parts, ()) = http::Request::new(()).into_parts();
/// parts.extensions.insert(Principal::new("user-42"));
/// assert_eq!(key.extract(&parts), Some(RateLimitKey::Principal(Principal::new("user-42"))));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PrincipalKey;

impl KeyExtractor for PrincipalKey {
    fn extract(&self, parts: &Parts) -> Option<RateLimitKey> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(RateLimitKey::Principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masks() {
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 48), ip("2001:db8:1::"));
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 128), ip("2001:db8:1:2:3:4:5:6"));
        assert_eq!(mask(ip("2001:db8:1:2:3:4:5:6"), 0), ip("::"));
        assert_eq!(mask(ip("192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn peer_sources() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        assert_eq!(PeerIp::new().extract(&parts), None);
        parts.extensions.insert("192.0.2.1:1".parse::<SocketAddr>().unwrap());
        assert_eq!(PeerIp::new().extract(&parts), Some(RateLimitKey::Ip(ip("192.0.2.1"))));
        // `PeerAddr` wins over a bare `SocketAddr`.
        parts
            .extensions
            .insert(PeerAddr("[::ffff:192.0.2.2]:1".parse().unwrap()));
        assert_eq!(PeerIp::new().extract(&parts), Some(RateLimitKey::Ip(ip("192.0.2.2"))));
        let custom = PeerIp::new().peer_addr_with(|_| Some(ip("198.51.100.1")));
        assert_eq!(custom.extract(&parts), Some(RateLimitKey::Ip(ip("198.51.100.1"))));
    }

    /// axum's `ConnectInfo` is found without `peer_addr_with`, so a server that uses
    /// `into_make_service_with_connect_info` gets per-client buckets with no wiring.
    #[cfg(feature = "axum")]
    #[test]
    fn axum_connect_info_is_read() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts
            .extensions
            .insert(axum::extract::ConnectInfo("192.0.2.7:9".parse::<SocketAddr>().unwrap()));
        assert_eq!(PeerIp::new().extract(&parts), Some(RateLimitKey::Ip(ip("192.0.2.7"))));
        let xff = ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(xff.extract(&parts), Some(RateLimitKey::Ip(ip("192.0.2.7"))));
    }

    #[test]
    fn mapped_peer_is_trusted_as_ipv4() {
        let xff = ForwardedIp::x_forwarded_for(["10.0.0.0/8".parse().unwrap()]);
        let (mut parts, ()) = http::Request::builder()
            .header("x-forwarded-for", "203.0.113.9")
            .body(())
            .unwrap()
            .into_parts();
        parts
            .extensions
            .insert(PeerAddr("[::ffff:10.0.0.2]:1".parse().unwrap()));
        assert_eq!(xff.extract(&parts), Some(RateLimitKey::Ip(ip("203.0.113.9"))));
    }
}
