//! [`Handle`]: one socket bound to one network namespace.

use cni_netns::NetNs;
use netlink_packet_core::{NetlinkDeserializable, NetlinkSerializable};

use crate::error::Result;
use crate::socket::Socket;

/// A NETLINK_ROUTE client bound to one network namespace.
///
/// Operations are grouped by object: links ([`crate::link`]), addresses
/// ([`crate::addr`]), routes ([`crate::route`]), bridge ports/VLANs
/// ([`crate::bridge`]) and the forwarding switch ([`Handle::forwarding`]).
#[derive(Debug)]
pub struct Handle {
    sock: Socket,
    ns_label: String,
}

impl Handle {
    /// Opens a socket in the calling thread's current namespace.
    ///
    /// # Errors
    /// [`crate::Error::Io`] when the socket cannot be created or configured.
    pub fn new() -> Result<Self> {
        Ok(Self {
            sock: Socket::open()?,
            ns_label: "current netns".into(),
        })
    }

    /// Opens a socket inside `ns` (the thread enters it briefly); the socket stays bound
    /// to `ns` for its lifetime.
    ///
    /// # Errors
    /// [`crate::Error::Netns`] when the namespace cannot be entered, or as [`Handle::new`].
    pub fn new_in(ns: &NetNs) -> Result<Self> {
        let sock = {
            let _guard = ns.enter()?;
            Socket::open()?
        };
        Ok(Self {
            sock,
            ns_label: format!("netns {}", ns.path().display()),
        })
    }

    /// Which namespace this handle talks to (for messages).
    pub fn ns_label(&self) -> &str {
        &self.ns_label
    }

    pub(crate) fn request<M>(&mut self, msg: M, flags: u16, op: &str) -> Result<Vec<M>>
    where
        M: NetlinkSerializable + NetlinkDeserializable + Clone,
    {
        let op = format!("{op} in {}", self.ns_label);
        self.sock.request(msg, flags, &op)
    }
}
