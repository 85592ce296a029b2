//! Raw TCP (`wasi:sockets`) for a step: no socket at all without a `tcp://host:port` grant;
//! with grants, connections only to the granted destinations (names resolved by the host at
//! connect time), every other connect refused and audited. UDP is never allowed.

use super::{Granter, StepSink};
use std::net::SocketAddr;
use std::sync::Arc;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Configure `wasi`'s sockets from the step's grants.
pub(crate) fn gate(wasi: &mut WasiCtxBuilder, granter: &Arc<Granter>, sink: &Arc<dyn StepSink>) {
    wasi.allow_udp(false);
    let destinations = granter.tcp();
    if destinations.is_empty() {
        // Socket creation itself is refused: nothing to hoard.
        wasi.allow_tcp(false).allow_ip_name_lookup(false);
        return;
    }
    wasi.allow_tcp(true).allow_ip_name_lookup(true);
    let (granter, sink) = (granter.clone(), sink.clone());
    let destinations = Arc::new(destinations);
    wasi.socket_addr_check(move |addr: SocketAddr, use_: SocketAddrUse| {
        let (granter, sink, destinations) = (granter.clone(), sink.clone(), destinations.clone());
        Box::pin(async move {
            match use_ {
                // A connect first binds the socket to an ephemeral local port.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                SocketAddrUse::TcpConnect => {
                    // A raw stream can write anything: not during a plan.
                    if let Err(denial) = granter.write(|| format!("connect to tcp://{addr}")) {
                        sink.denied(&denial);
                        return false;
                    }
                    if let Some((host, port)) = granted(&destinations, addr).await {
                        granter.used_tcp(&host, port);
                        return true;
                    }
                    sink.denied(&granter.deny_tcp(addr.to_string()));
                    false
                }
                _ => false,
            }
        })
    });
}

/// The granted destination `addr` is (by IP, or by a name that resolves to it), if any.
async fn granted(destinations: &[(String, u16)], addr: SocketAddr) -> Option<(String, u16)> {
    for (host, port) in destinations {
        if *port != addr.port() {
            continue;
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            if ip == addr.ip() {
                return Some((host.clone(), *port));
            }
            continue;
        }
        if let Ok(mut resolved) = tokio::net::lookup_host((host.as_str(), *port)).await
            && resolved.any(|a| a.ip() == addr.ip())
        {
            return Some((host.clone(), *port));
        }
    }
    None
}
