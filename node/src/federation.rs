//! Forming a federation: from every member's address, ports and public key, the node config
//! (keyring, engine servers, binds) and the nats-server config (JetStream, cluster routes,
//! generated client and route passwords) each member gets. One code path for `cairn
//! dev-cluster` (loopback) and the deployer (hosts over SSH, or processes with `--provider
//! local`). Private keys never appear here: each member keeps the keypair `cairn configure`
//! generated on it, and `cairn configure --federation FILE` merges the rest in.

use crate::config::Config;
use std::path::Path;

/// Ports of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP API.
    pub api: u16,
    /// Websocket stream.
    pub ws: u16,
    /// nats-server client port.
    pub nats: u16,
    /// nats-server cluster (route) port.
    pub route: u16,
}

impl Ports {
    /// The standard ports on a host of its own: 9984, 9985, 4222, 6222.
    pub const STANDARD: Ports = Ports { api: 9984, ws: 9985, nats: 4222, route: 6222 };
}

/// One member as the others see it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Address the other members (and clients) dial.
    pub host: String,
    /// Address this member's servers listen on (`0.0.0.0` on a host whose firewall decides).
    pub bind: String,
    /// Its ports.
    pub ports: Ports,
    /// Its public key (base58), generated on the member.
    pub public_key: String,
}

/// The engine's credentials, shared by the members (kept 0600 by whoever stores them).
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Client user name.
    pub user: String,
    /// Client password.
    pub password: String,
    /// Password of the cluster routes between servers.
    pub route_password: String,
}

impl Secrets {
    /// Fresh random passwords (144 bits each).
    pub fn generate() -> Self {
        Secrets { user: "cairn".into(), password: random_secret(), route_password: random_secret() }
    }
}

fn random_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 18] = rand::thread_rng().gen();
    bs58::encode(bytes).into_string()
}

/// Where a member on a host of its own keeps its database (the deployer's and Ansible's layout).
pub const HOST_DATA_DIR: &str = "/var/lib/cairn/data";
/// Where its nats-server keeps the JetStream store.
pub const HOST_NATS_DIR: &str = "/var/lib/cairn/nats";

/// The settings every member on a host of its own starts from (the deployer and `cairn
/// federate` both use this): a node waits up to 2 minutes for a fresh engine cluster to elect
/// its JetStream leader, and sends StatsD to the monitor host's Telegraf when there is one.
pub fn host_base(statsd_host: Option<&str>) -> Config {
    let mut base = Config::default();
    base.database.connect_timeout_secs = 120;
    if let Some(ip) = statsd_host {
        base.statsd.host = ip.to_string();
        base.statsd.port = 8125;
    }
    base
}

/// Member `i`'s node config: everything but the keypair. `data_dir` is where its database
/// lives; `base` carries settings the caller wants kept (statsd, block sizes).
pub fn node_config(i: usize, members: &[Member], secrets: &Secrets, data_dir: &Path, base: &Config) -> Config {
    let me = &members[i];
    let mut c = base.clone();
    c.keypair = Default::default();
    c.keyring = members.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, m)| m.public_key.clone()).collect();
    c.server.bind = format!("{}:{}", me.bind, me.ports.api);
    c.wsserver.bind = format!("{}:{}", me.bind, me.ports.ws);
    c.wsserver.advertised_host = me.host.clone();
    c.wsserver.advertised_port = me.ports.ws;
    c.database.backend = "jetstream".into();
    c.database.path = data_dir.to_path_buf();
    // This member's own server first; the client moves to the next one if it fails.
    c.database.servers = (0..members.len()).map(|k| &members[(i + k) % members.len()]).map(|m| format!("nats://{}:{}", m.host, m.ports.nats)).collect();
    c.database.user = secrets.user.clone();
    c.database.password = secrets.password.clone();
    // Bigger blocks than a single node's 20 ms: every block costs a vote from every member, so
    // a federation amortizes it over more transactions (measured at 3 members: commit p99
    // 3.1 s -> 1.1 s, committed tx/s +24 %).
    c.block.timeout_ms = c.block.timeout_ms.max(100);
    c
}

/// Member `i`'s nats-server config: JetStream under `store_dir`, client authorization, and
/// with more than one member a cluster with authenticated routes to every other member.
pub fn nats_config(i: usize, members: &[Member], secrets: &Secrets, store_dir: &Path) -> String {
    let me = &members[i];
    let Secrets { user, password, route_password } = secrets;
    let mut c = format!(
        "server_name: n{i}\nlisten: {}:{}\njetstream {{ store_dir: {:?}, max_memory_store: 256MB }}\n\
         authorization {{ user: {user:?}, password: {password:?} }}\n",
        me.bind,
        me.ports.nats,
        store_dir.display().to_string(),
    );
    if members.len() > 1 {
        let routes: Vec<String> = members
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, m)| format!("nats-route://route:{route_password}@{}:{}", m.host, m.ports.route))
            .collect();
        c.push_str(&format!(
            "cluster {{\n  name: cairn\n  listen: {}:{}\n  authorization {{ user: route, password: {route_password:?} }}\n  routes: [\n    {}\n  ]\n}}\n",
            me.bind,
            me.ports.route,
            routes.join("\n    ")
        ));
    }
    c
}

/// `cairn configure --federation FILE`: the config at `path` becomes `federation` (a config
/// without a keypair) plus the keypair already there, generated if there is none.
pub fn merge_keeping_keypair(existing: Option<Config>, federation: Config) -> anyhow::Result<Config> {
    if !federation.keypair.private.is_empty() {
        anyhow::bail!("the federation file holds a private key: keys are generated on each member and never travel");
    }
    let mut c = federation;
    match existing {
        Some(e) if !e.keypair.private.is_empty() => c.keypair = e.keypair,
        _ => {
            let kp = crate::crypto::Keypair::generate();
            c.keypair.private = kp.private_b58();
            c.keypair.public = kp.public_b58;
        }
    }
    if c.keyring.contains(&c.keypair.public) {
        c.keyring.retain(|k| *k != c.keypair.public);
    }
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member { host: format!("10.0.0.{}", i + 4), bind: "0.0.0.0".into(), ports: Ports::STANDARD, public_key: crate::crypto::Keypair::generate().public_b58 })
            .collect()
    }

    #[test]
    fn every_member_gets_the_others_keys_and_routes() {
        let m = members(3);
        let s = Secrets::generate();
        for i in 0..3 {
            let c = node_config(i, &m, &s, Path::new("/var/lib/cairn"), &Config::default());
            assert_eq!(c.keyring.len(), 2);
            assert!(!c.keyring.contains(&m[i].public_key));
            assert_eq!(c.database.servers[0], format!("nats://{}:4222", m[i].host), "own server first");
            assert!(c.keypair.private.is_empty());
            let n = nats_config(i, &m, &s, Path::new("/var/lib/cairn/nats"));
            assert_eq!(n.matches("nats-route://").count(), 2);
            assert!(!n.contains(&format!("@{}:6222", m[i].host)), "no route to itself");
            assert!(n.contains(&s.password) && n.contains(&s.route_password));
        }
        assert!(!nats_config(0, &m[..1], &s, Path::new("/x")).contains("cluster"), "one member: no cluster block");
    }

    #[test]
    fn merging_keeps_the_members_keypair_and_refuses_a_private_key() {
        let m = members(2);
        let s = Secrets::generate();
        let f = node_config(0, &m, &s, Path::new("/d"), &Config::default());
        let mut existing = Config::default();
        let kp = crate::crypto::Keypair::generate();
        existing.keypair.private = kp.private_b58();
        existing.keypair.public = kp.public_b58.clone();
        let merged = merge_keeping_keypair(Some(existing.clone()), f.clone()).unwrap();
        assert_eq!(merged.keypair.public, kp.public_b58);
        assert_eq!(merged.keyring, f.keyring);
        let fresh = merge_keeping_keypair(None, f.clone()).unwrap();
        assert!(!fresh.keypair.private.is_empty());
        assert!(merge_keeping_keypair(None, existing).is_err());
    }
}
