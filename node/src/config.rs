//! Node configuration: a TOML file, overridden by `CAIRN_*` environment variables, overridden
//! by command-line flags. The file holds the node's private key, so it is written 0600 and
//! `show-config` never prints the key.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything a node needs to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP API listen address.
    pub server: Server,
    /// Websocket event stream.
    pub wsserver: WsServer,
    /// The node's Ed25519 keypair (base58).
    pub keypair: KeypairConfig,
    /// Public keys of the other nodes of the federation.
    pub keyring: Vec<String>,
    /// Where the embedded engine keeps its data.
    pub database: Database,
    /// Block building.
    pub block: BlockConfig,
    /// StatsD metrics destination.
    pub statsd: Statsd,
    /// Seconds a silent partition owner keeps its backlog before another node takes over.
    pub backlog_reassign_delay: u64,
}

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// host:port to listen on.
    pub bind: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Seconds a `mode=commit` POST waits for its block's decision.
    pub commit_timeout_secs: u64,
}

/// Websocket settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WsServer {
    /// host:port to listen on.
    pub bind: String,
    /// `ws` or `wss`, as advertised in `/api/v1/`.
    pub advertised_scheme: String,
    /// Host advertised in `/api/v1/` (clients connect there).
    pub advertised_host: String,
    /// Port advertised in `/api/v1/`.
    pub advertised_port: u16,
}

/// Keypair settings.
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KeypairConfig {
    /// base58 public key.
    pub public: String,
    /// base58 private key (32-byte seed).
    pub private: String,
}

impl std::fmt::Debug for KeypairConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeypairConfig {{ public: {:?}, private: <hidden> }}", self.public)
    }
}

/// Engine and local storage settings.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    /// `embedded` (one machine, no external service) or `jetstream` (a federation whose
    /// streams live in a NATS JetStream cluster).
    pub backend: String,
    /// Directory of the local store (all data with `embedded`; a rebuildable copy of the
    /// streams plus local state with `jetstream`).
    pub path: PathBuf,
    /// jetstream: client URLs of the nats-servers, this node's own first.
    pub servers: Vec<String>,
    /// jetstream: engine user (the nats-server `authorization` user).
    pub user: String,
    /// jetstream: engine password (kept in this 0600 file; never printed).
    pub password: String,
    /// jetstream: replicas of every stream, capped by the number of servers.
    pub replicas: usize,
    /// jetstream: backlog partitions to create when the engine has none (0: one per node).
    pub shards: u32,
    /// jetstream: seconds to wait for the engine at start before giving up.
    pub connect_timeout_secs: u64,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("servers", &self.servers)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("replicas", &self.replicas)
            .field("shards", &self.shards)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

/// Block builder settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlockConfig {
    /// Most transactions in one block (BigchainDB: 1000).
    pub max_txs: usize,
    /// Milliseconds to wait for more transactions before closing a non-full block.
    pub timeout_ms: u64,
}

/// StatsD settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Statsd {
    /// Host of the StatsD agent (Telegraf).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// Sample rate for per-transaction metrics, 0..=1.
    pub rate: f64,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

impl Default for Server {
    fn default() -> Self {
        Server { bind: "127.0.0.1:9984".into(), max_body_bytes: 1 << 20, commit_timeout_secs: 30 }
    }
}
impl Default for WsServer {
    fn default() -> Self {
        WsServer { bind: "127.0.0.1:9985".into(), advertised_scheme: "ws".into(), advertised_host: "localhost".into(), advertised_port: 9985 }
    }
}
impl Default for Database {
    fn default() -> Self {
        Database {
            backend: "embedded".into(),
            path: home().join(".cairn").join("data"),
            servers: Vec::new(),
            user: String::new(),
            password: String::new(),
            replicas: 3,
            shards: 0,
            connect_timeout_secs: 30,
        }
    }
}
impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig { max_txs: 1000, timeout_ms: 20 }
    }
}
impl Default for Statsd {
    fn default() -> Self {
        Statsd { host: "localhost".into(), port: 8125, rate: 0.01 }
    }
}
impl Default for Config {
    fn default() -> Self {
        Config {
            server: Server::default(),
            wsserver: WsServer::default(),
            keypair: KeypairConfig::default(),
            keyring: Vec::new(),
            database: Database::default(),
            block: BlockConfig::default(),
            statsd: Statsd::default(),
            backlog_reassign_delay: 120,
        }
    }
}

/// Default config file: `$CAIRN_CONFIG`, else `~/.cairn/config.toml`.
pub fn default_path() -> PathBuf {
    std::env::var_os("CAIRN_CONFIG").map(PathBuf::from).unwrap_or_else(|| home().join(".cairn").join("config.toml"))
}

impl Config {
    /// Reads a config file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {} (create one with `cairn configure`)", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config {} is not valid", path.display()))
    }

    /// Reads the file if it exists (defaults otherwise), then applies `CAIRN_*` variables.
    pub fn load(path: &Path) -> Result<Self> {
        let mut cfg = if path.exists() { Self::read(path)? } else { Config::default() };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Applies `CAIRN_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn parse<T: std::str::FromStr>(k: &str, v: String) -> Result<T> {
            v.parse().map_err(|_| anyhow::anyhow!("environment variable {k}={v:?} is not a valid value"))
        }
        if let Some(v) = get("CAIRN_SERVER_BIND") { self.server.bind = v }
        if let Some(v) = get("CAIRN_SERVER_MAX_BODY_BYTES") { self.server.max_body_bytes = parse("CAIRN_SERVER_MAX_BODY_BYTES", v)? }
        if let Some(v) = get("CAIRN_WSSERVER_BIND") { self.wsserver.bind = v }
        if let Some(v) = get("CAIRN_WSSERVER_ADVERTISED_HOST") { self.wsserver.advertised_host = v }
        if let Some(v) = get("CAIRN_WSSERVER_ADVERTISED_PORT") { self.wsserver.advertised_port = parse("CAIRN_WSSERVER_ADVERTISED_PORT", v)? }
        if let Some(v) = get("CAIRN_KEYPAIR_PUBLIC") { self.keypair.public = v }
        if let Some(v) = get("CAIRN_KEYPAIR_PRIVATE") { self.keypair.private = v }
        if let Some(v) = get("CAIRN_KEYRING") {
            self.keyring = v.split([',', ':']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        }
        if let Some(v) = get("CAIRN_DATABASE_BACKEND") { self.database.backend = v }
        if let Some(v) = get("CAIRN_DATABASE_PATH") { self.database.path = PathBuf::from(v) }
        if let Some(v) = get("CAIRN_DATABASE_SERVERS") {
            self.database.servers = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        }
        if let Some(v) = get("CAIRN_DATABASE_USER") { self.database.user = v }
        if let Some(v) = get("CAIRN_DATABASE_PASSWORD") { self.database.password = v }
        if let Some(v) = get("CAIRN_DATABASE_REPLICAS") { self.database.replicas = parse("CAIRN_DATABASE_REPLICAS", v)? }
        if let Some(v) = get("CAIRN_BLOCK_MAX_TXS") { self.block.max_txs = parse("CAIRN_BLOCK_MAX_TXS", v)? }
        if let Some(v) = get("CAIRN_BLOCK_TIMEOUT_MS") { self.block.timeout_ms = parse("CAIRN_BLOCK_TIMEOUT_MS", v)? }
        if let Some(v) = get("CAIRN_STATSD_HOST") { self.statsd.host = v }
        if let Some(v) = get("CAIRN_STATSD_PORT") { self.statsd.port = parse("CAIRN_STATSD_PORT", v)? }
        if let Some(v) = get("CAIRN_STATSD_RATE") { self.statsd.rate = parse("CAIRN_STATSD_RATE", v)? }
        if let Some(v) = get("CAIRN_BACKLOG_REASSIGN_DELAY") { self.backlog_reassign_delay = parse("CAIRN_BACKLOG_REASSIGN_DELAY", v)? }
        Ok(())
    }

    /// Checks what a running node needs, with a message that says how to fix it.
    pub fn validate(&self) -> Result<()> {
        if self.keypair.private.is_empty() {
            bail!("no keypair configured: run `cairn configure -y` (or set CAIRN_KEYPAIR_PRIVATE and CAIRN_KEYPAIR_PUBLIC)");
        }
        let kp = crate::crypto::Keypair::from_private_b58(&self.keypair.private)
            .map_err(|_| anyhow::anyhow!("keypair.private is not a base58 Ed25519 private key: run `cairn configure` again"))?;
        if !self.keypair.public.is_empty() && kp.public_b58 != self.keypair.public {
            bail!("keypair.public does not belong to keypair.private (expected {}): fix the config", kp.public_b58);
        }
        for k in &self.keyring {
            if !crate::tx::is_public_key(k) {
                bail!("keyring entry {k:?} is not a base58 public key");
            }
        }
        match self.database.backend.as_str() {
            "embedded" => {}
            "jetstream" => {
                if self.database.servers.is_empty() {
                    bail!("database.backend is \"jetstream\" but database.servers is empty: list the nats-server client URLs, this node's own first (CAIRN_DATABASE_SERVERS=nats://127.0.0.1:4222,...)");
                }
            }
            other => bail!("database.backend {other:?} is unknown: use \"embedded\" (one machine) or \"jetstream\" (a federation on NATS JetStream)"),
        }
        if self.block.max_txs == 0 || self.block.max_txs > 10_000 {
            bail!("block.max_txs must be between 1 and 10000, got {}", self.block.max_txs);
        }
        if !(0.0..=1.0).contains(&self.statsd.rate) {
            bail!("statsd.rate must be between 0 and 1, got {}", self.statsd.rate);
        }
        Ok(())
    }

    /// The config as TOML with the private key replaced (safe to print or log).
    pub fn redacted_toml(&self) -> String {
        let mut c = self.clone();
        if !c.keypair.private.is_empty() {
            c.keypair.private = "<hidden: stored in the config file>".into();
        }
        if !c.database.password.is_empty() {
            c.database.password = "<hidden: stored in the config file>".into();
        }
        toml::to_string_pretty(&c).expect("config serializes")
    }

    /// Writes the config file with mode 0600 (it holds the private key).
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("toml.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(toml::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_keyring_splits() {
        let mut c: Config = toml::from_str("keyring = [\"a\"]\n[server]\nbind = \"1.2.3.4:1\"\n").unwrap();
        assert_eq!(c.server.bind, "1.2.3.4:1");
        let env = |k: &str| match k {
            "CAIRN_SERVER_BIND" => Some("0.0.0.0:9".to_string()),
            "CAIRN_KEYRING" => Some("k1, k2:k3".to_string()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.server.bind, "0.0.0.0:9");
        assert_eq!(c.keyring, vec!["k1", "k2", "k3"]);
        assert!(c.apply_env(|k| (k == "CAIRN_STATSD_PORT").then(|| "x".into())).is_err());
    }

    #[test]
    fn unknown_keys_are_rejected_and_private_key_is_hidden() {
        assert!(toml::from_str::<Config>("[server]\nbnd = \"x\"\n").is_err());
        let mut c = Config::default();
        c.keypair.private = "SECRET".into();
        c.database.password = "ENGINEPW".into();
        assert!(!c.redacted_toml().contains("SECRET"));
        assert!(!c.redacted_toml().contains("ENGINEPW"));
        assert!(!format!("{c:?}").contains("ENGINEPW"));
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}
