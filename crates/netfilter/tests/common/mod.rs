//! Private network-namespace fixture for the privileged tests (until the shared harness
//! is used): `ip netns add <random>`, closures run on a thread that setns()'d into it,
//! deletion on drop (which drops every rule inside).

#![allow(dead_code, clippy::print_stdout, reason = "test fixture")]

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sched::{CloneFlags, setns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Ns {
    pub name: String,
}

/// `Some(())` when running as root; otherwise prints a skip note (or panics under CI=true).
pub fn require_root(test: &str) -> Option<()> {
    if nix::unistd::Uid::effective().is_root() {
        return Some(());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root (CI=true)");
    }
    println!("skipping {test}: needs root");
    None
}

impl Ns {
    pub fn new() -> Ns {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "cninf-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip netns add {name}");
        let ns = Ns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs `f` on a thread inside the namespace (children it spawns inherit it).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).expect("open netns");
                setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("thread in netns panicked")
        })
    }

    /// Runs a shell command inside the namespace; panics on failure; returns stdout.
    pub fn sh(&self, cmd: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell command with stdin and environment, returning (success, stdout, stderr).
    pub fn sh_in(&self, cmd: &str, env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
        use std::io::Write;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, "sh", "-c", cmd]);
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `iptables -t nat -S` (or ip6tables) listing.
    pub fn nat(&self, v6: bool) -> String {
        self.sh(if v6 {
            "ip6tables -t nat -S"
        } else {
            "iptables -t nat -S"
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: `a` has 10.78.0.1/24 and fd78::1/64 on `va`,
/// `b` has .2 / ::2 on `vb` (static neighbours, no DAD), so UDP from `b` reaches `a` at once.
pub fn pair() -> (Ns, Ns) {
    let a = Ns::new();
    let b = Ns::new();
    a.sh(&format!(
        "ip link add va address 02:00:00:00:00:0a type veth peer name vb address 02:00:00:00:00:0b netns {}",
        b.name
    ));
    a.sh(
        "ip addr add 10.78.0.1/24 dev va && ip -6 addr add fd78::1/64 dev va nodad && \
         ip link set va up && \
         ip neigh add 10.78.0.2 lladdr 02:00:00:00:00:0b dev va nud permanent && \
         ip -6 neigh add fd78::2 lladdr 02:00:00:00:00:0b dev va nud permanent",
    );
    b.sh(
        "ip addr add 10.78.0.2/24 dev vb && ip -6 addr add fd78::2/64 dev vb nodad && \
         ip link set vb up && \
         ip neigh add 10.78.0.1 lladdr 02:00:00:00:00:0a dev vb nud permanent && \
         ip -6 neigh add fd78::1 lladdr 02:00:00:00:00:0a dev vb nud permanent",
    );
    (a, b)
}

/// Sends one UDP datagram from namespace `b` to `dst`.
pub fn send_udp(b: &Ns, dst: &str) {
    let dst: SocketAddr = dst.parse().unwrap();
    b.run(|| {
        let any: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        UdpSocket::bind(any).unwrap().send_to(b"ping", dst).unwrap();
    });
}

/// Turns connection tracking on in `ns` only: an nftables rule that needs it.
pub fn enable_conntrack(ns: &Ns) {
    ns.sh("nft 'add table inet cttest; \
         add chain inet cttest pre { type filter hook prerouting priority 0; }; \
         add rule inet cttest pre ct state new counter'");
}
