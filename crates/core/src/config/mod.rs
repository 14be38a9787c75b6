//! The configuration tree of every role.
//!
//! Layers, later wins: built-in defaults (enough for the embedded mode with no file at
//! all) → the TOML file given with `--config` → `LOADSTAR_` environment variables, where
//! `__` separates levels (`LOADSTAR_DATABASE__URL`) → command-line flags, which the
//! binary applies on top. Unknown keys are errors, so a typo never silently falls back
//! to a default. `LOADSTAR_TEST_*` variables belong to the test harness and are ignored.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod cache;
pub use cache::{CacheConfig, CacheStrategy, EntityCacheConfig, WriteBackConfig};

/// Everything a loadstar process can be told.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for every local file: the SQLite database, later uploads and queues.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    /// Object storage: claim-checked job payloads (later uploads).
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub node: NodeConfig,
    pub log: LogConfig,
    /// Worker pools by name; none configured means one pool, `default`, on every queue.
    pub workers: BTreeMap<String, WorkerPoolConfig>,
    pub jobs: JobsConfig,
    pub queue: QueueConfig,
    pub payments: PaymentsConfig,
    pub orders: OrdersConfig,
    pub notifications: NotificationsConfig,
    /// The cache tiers and each entity's strategy.
    pub cache: CacheConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./var"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            node: NodeConfig::default(),
            log: LogConfig::default(),
            workers: BTreeMap::new(),
            jobs: JobsConfig::default(),
            queue: QueueConfig::default(),
            payments: PaymentsConfig::default(),
            orders: OrdersConfig::default(),
            notifications: NotificationsConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

/// The HTTP listener of the api role.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A request still running after this many seconds is answered 503.
    pub request_timeout_secs: u64,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// A connection must deliver a complete request head within this long of opening, or
    /// of its first byte after an idle keep-alive wait; otherwise it is closed. Bounds
    /// what slow and silent clients can hold.
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request in flight and no byte of a next one is
    /// closed after this long (HTTP/2: no open stream; pings do not count).
    pub keepalive_timeout_ms: u64,
    /// After answering a request whose body it did not read (a 413), the server keeps
    /// reading and discarding for up to this long before closing, so that a client still
    /// writing its body gets to read the answer instead of a reset.
    pub linger_time_ms: u64,
    /// Lingering stops early when the client sends nothing for this long.
    pub linger_read_timeout_ms: u64,
    /// Lingering stops early after discarding this many bytes.
    pub linger_max_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 30,
            header_read_timeout_ms: 10_000,
            keepalive_timeout_ms: 75_000,
            linger_time_ms: 30_000,
            linger_read_timeout_ms: 5_000,
            linger_max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Where the domain data lives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Empty: SQLite at `<data_dir>/loadstar.db`. `sqlite://path` or `postgres://…`.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
    /// Connections per pool (readers on SQLite; the single pool on PostgreSQL).
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails with 503.
    pub acquire_timeout_ms: u64,
    /// Deadline of one statement once it has a connection: PostgreSQL's
    /// `statement_timeout`, and on the client side what a silent network is allowed.
    pub query_timeout_ms: u64,
    /// How often each PostgreSQL server is probed (`SELECT 1` on a connection of its own)
    /// to know whether it is up without asking on a request's path.
    pub health_check_interval_ms: u64,
    /// A probe (connect and `SELECT 1`) slower than this counts as the server being down.
    pub health_check_timeout_ms: u64,
    /// SQLite: how long a write waits for a lock held by another process (a backup, a
    /// `sqlite3` shell) before it is answered 503.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            query_timeout_ms: 5_000,
            health_check_interval_ms: 250,
            health_check_timeout_ms: 1_000,
            sqlite_busy_timeout_ms: 1_000,
        }
    }
}

/// Where objects (claim-checked job payloads) are kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Empty: a local directory, `<data_dir>/objects`. `file:///absolute/path` for another
    /// local directory. `s3://bucket` for an S3-compatible store (binaries built with the
    /// `s3` feature; credentials and endpoint from the `AWS_*` environment variables).
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
}

fn serialize_redacted_url<S: Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::redaction::redact_url_password(url))
}

/// Credentials and sessions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a login session.
    pub session_ttl_secs: u64,
    /// Argon2id memory cost in KiB (OWASP minimum: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id passes over memory.
    pub argon2_iterations: u32,
    /// Password hashes computed at once in this process (0: one per core). Each holds
    /// `argon2_memory_kib` for its whole run, so this bounds the memory password work
    /// takes, however many logins arrive.
    pub password_hash_concurrency: usize,
    /// Requests that may wait for a free hashing slot; beyond that they are answered 503
    /// with `Retry-After` at once.
    pub password_hash_queue: usize,
    /// Longest wait for a hashing slot before the answer is 503 with `Retry-After`.
    pub password_hash_queue_wait_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_secs: 24 * 60 * 60,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            password_hash_concurrency: 0,
            password_hash_queue: 32,
            password_hash_queue_wait_ms: 1_000,
        }
    }
}

/// Identity of this process among its peers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// 0–1023, unique per running process: it is part of every id this node makes.
    /// `None`: leased from the database at start (PostgreSQL), 0 on SQLite. Set: exactly
    /// this id, and on PostgreSQL a start is refused while another live node holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
    /// How long a leased node id stays reserved after its holder stops renewing it (a
    /// crash); the holder renews it every third of this.
    pub lease_secs: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: None,
            lease_secs: 30,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directive, e.g. `info` or `loadstar=debug,sqlx=warn`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Auto,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, human-readable when it is.
    #[default]
    Auto,
    Json,
    Text,
}

/// Jobs a worker pool runs at once unless configured otherwise. Handlers mostly wait (on
/// the database, on an external system), so slots are cheap; with 8 the default pool on
/// SQLite fell behind at ~250 orders/s, every slot waiting its turn on the single writer
/// (`docs/performance.md`, issue 9 item 3).
pub const DEFAULT_WORKER_CONCURRENCY: usize = 32;

/// One pool of workers (`[workers.<name>]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerPoolConfig {
    /// Queues this pool takes jobs from, in turn.
    pub queues: Vec<String>,
    /// Jobs run at once by this pool in this process.
    pub concurrency: usize,
    /// Job starts per second on each of this pool's queues, across every process
    /// (0: unlimited). For queues that call an external system with a quota.
    pub rate_limit_per_sec: u32,
}

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        Self {
            queues: vec!["default".to_owned()],
            concurrency: DEFAULT_WORKER_CONCURRENCY,
            rate_limit_per_sec: 0,
        }
    }
}

/// The job queue and its delivery rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// How long a fetched job stays with a worker without a heartbeat.
    pub lease_secs: u64,
    /// How long an idle pool waits before asking again.
    pub poll_interval_ms: u64,
    /// On shutdown, how long running jobs may take to finish.
    pub shutdown_grace_secs: u64,
    /// Retry policy per job kind; the key is the kind with `_` for `.`
    /// (`payment_charge` for `payment.charge`), so environment variables can name it:
    /// `LOADSTAR_JOBS__POLICIES__PAYMENT_CHARGE__MAX_ATTEMPTS=2`.
    pub policies: BTreeMap<String, JobPolicyConfig>,
    /// Payloads larger than this are written to object storage and the job carries a
    /// pointer (claim check). At most 262144, the largest payload stored inline.
    pub inline_payload_limit_bytes: usize,
    /// Where alerts are POSTed (JSON, signed like callbacks). Empty: alerts are only logged.
    pub alert_webhook_url: String,
    /// HMAC-SHA256 key that signs alert webhooks; printed redacted. Empty: unsigned.
    #[serde(serialize_with = "serialize_redacted")]
    pub alert_signing_secret: String,
    /// Alert when a job kind's error queue grows to this many jobs (0: never); a policy's
    /// `dead_alert_threshold` overrides it per kind.
    pub dead_alert_threshold: u64,
    /// How often the worker role checks error-queue sizes.
    pub dead_alert_check_secs: u64,
    /// Publish/subscribe: every topic's subscribed queues (`[jobs.topics.<name>]`).
    pub topics: BTreeMap<String, TopicConfig>,
    /// Routing: routing key (exact, or a prefix ending in `.*`) to the one queue it selects.
    pub routes: BTreeMap<String, String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            lease_secs: 30,
            poll_interval_ms: 200,
            shutdown_grace_secs: 30,
            policies: BTreeMap::new(),
            inline_payload_limit_bytes: 256 * 1024,
            alert_webhook_url: String::new(),
            alert_signing_secret: String::new(),
            dead_alert_threshold: 100,
            dead_alert_check_secs: 30,
            topics: BTreeMap::new(),
            routes: BTreeMap::new(),
        }
    }
}

impl JobsConfig {
    /// The policy of `kind` (`payment.charge` looks up `payment_charge`), or the default.
    pub fn policy(&self, kind: &str) -> JobPolicyConfig {
        self.policies
            .get(&kind.replace('.', "_"))
            .cloned()
            .unwrap_or_default()
    }

    /// The error-queue size at which `kind` raises an alert (0: never).
    pub fn dead_alert_threshold(&self, kind: &str) -> u64 {
        self.policies
            .get(&kind.replace('.', "_"))
            .and_then(|policy| policy.dead_alert_threshold)
            .unwrap_or(self.dead_alert_threshold)
    }
}

/// The subscribers of one topic (`[jobs.topics.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Each of these queues receives its own copy of every message published to the topic.
    pub queues: Vec<String>,
}

/// Which engine carries the jobs (`[queue]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `sqlite`, `postgres` or `rabbitmq`. Unset: the engine of `[database]`, in the same
    /// database as the domain. `rabbitmq` keeps the job ledger (state, history, error
    /// queue) in that database too, and delivers through the broker.
    pub backend: Option<QueueBackend>,
    /// The broker for `backend = "rabbitmq"`: `amqp://user:pass@host:5672/%2f`; a
    /// `?heartbeat=` in it overrides `rabbitmq_heartbeat_secs`. Printed redacted.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub rabbitmq_url: String,
    /// Prefix of every exchange and queue name on the broker.
    pub rabbitmq_prefix: String,
    /// Unacknowledged messages per queue per process: jobs running plus those waiting
    /// for a free worker slot. At least the largest pool's concurrency.
    pub rabbitmq_prefetch: u16,
    /// Let the broker delete job queues nobody used for this long (0: keep them). For
    /// short-lived deployments sharing a broker, such as test runs.
    pub rabbitmq_idle_queue_expiry_secs: u64,
    /// AMQP heartbeat proposed to the broker: a connection silent for two intervals is
    /// given up and made anew, so workers resume within seconds of a network that went
    /// quiet without closing anything.
    pub rabbitmq_heartbeat_secs: u16,
    /// Deadline of every broker operation (connect, declare, consume, publish and its
    /// confirm, ack); past it the connection counts as lost.
    pub rabbitmq_operation_timeout_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: None,
            rabbitmq_url: String::new(),
            rabbitmq_prefix: "loadstar".to_owned(),
            rabbitmq_prefetch: 64,
            rabbitmq_idle_queue_expiry_secs: 0,
            rabbitmq_heartbeat_secs: 5,
            rabbitmq_operation_timeout_ms: 5000,
        }
    }
}

/// A job queue engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    Sqlite,
    Postgres,
    Rabbitmq,
}

/// Retry rules of one job kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobPolicyConfig {
    /// Deliveries before the job goes to the error queue (or is discarded).
    pub max_attempts: u32,
    /// First retry waits up to this long; each further retry doubles it (full jitter).
    pub backoff_base_ms: u64,
    /// Longest wait between two attempts.
    pub backoff_cap_ms: u64,
    /// After the last attempt: keep in the error queue, drop, or keep and alert.
    pub on_exhausted: OnExhausted,
    /// Overrides `jobs.dead_alert_threshold` for this kind.
    pub dead_alert_threshold: Option<u64>,
}

impl Default for JobPolicyConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 300_000,
            on_exhausted: OnExhausted::DeadLetter,
            dead_alert_threshold: None,
        }
    }
}

/// What happens to a job whose last attempt failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    #[default]
    DeadLetter,
    Discard,
    /// Like `dead_letter`, and raises an alert (error log and webhook).
    Alert,
}

/// The external payment provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Base URL of the provider (`loadstar sim payments` listens on 127.0.0.1:9090).
    pub url: String,
    /// A charge request taking longer fails (and is retried).
    pub timeout_ms: u64,
    /// Consecutive provider failures that open the circuit breaker (calls then fail
    /// fast, without reaching the provider).
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before one trial call (seconds).
    pub breaker_open_secs: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9090".to_owned(),
            timeout_ms: 5_000,
            breaker_failure_threshold: 5,
            breaker_open_secs: 10,
        }
    }
}

/// Order rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// An order still unpaid this long after it was placed is cancelled; its stock returns.
    pub unpaid_expiry_secs: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            unpaid_expiry_secs: 30 * 60,
        }
    }
}

/// Webhooks to clients.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// HMAC-SHA256 key that signs callbacks; printed redacted. Empty: callbacks are sent
    /// unsigned (development only).
    #[serde(serialize_with = "serialize_redacted")]
    pub signing_secret: String,
}

fn serialize_redacted<S: Serializer>(secret: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if secret.is_empty() { "" } else { "[redacted]" })
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

impl Config {
    /// Loads defaults, then the optional TOML file, then `LOADSTAR_` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        // The defaults go in as a layer of their own, so that a file or variable may set
        // one field of a section whose other fields have per-section defaults (the
        // cache's entities). They hold no secrets, so their redacted form is exact.
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env = Env::prefixed("LOADSTAR_")
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
            .split("__");
        let config: Config = figment.merge(env).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node.id.is_some_and(|id| id > crate::ids::MAX_NODE_ID) {
            return Err(ConfigError::Rule(format!(
                "node.id must be at most {}",
                crate::ids::MAX_NODE_ID
            )));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Rule(
                "database.max_connections must be at least 1".to_owned(),
            ));
        }
        if self.jobs.inline_payload_limit_bytes == 0
            || self.jobs.inline_payload_limit_bytes > 256 * 1024
        {
            return Err(ConfigError::Rule(
                "jobs.inline_payload_limit_bytes must be between 1 and 262144".to_owned(),
            ));
        }
        let on_postgres = self.database.url.starts_with("postgres");
        match self.queue.backend {
            Some(QueueBackend::Sqlite) if on_postgres => {
                return Err(ConfigError::Rule(
                    "queue.backend = \"sqlite\" needs an SQLite database.url".to_owned(),
                ))
            }
            Some(QueueBackend::Postgres) if !on_postgres => {
                return Err(ConfigError::Rule(
                    "queue.backend = \"postgres\" needs a postgres:// database.url".to_owned(),
                ))
            }
            Some(QueueBackend::Rabbitmq) if self.queue.rabbitmq_url.is_empty() => {
                return Err(ConfigError::Rule(
                    "queue.backend = \"rabbitmq\" needs queue.rabbitmq_url".to_owned(),
                ))
            }
            _ => {}
        }
        if self.queue.rabbitmq_prefetch == 0 {
            return Err(ConfigError::Rule(
                "queue.rabbitmq_prefetch must be at least 1".to_owned(),
            ));
        }
        if self.queue.rabbitmq_heartbeat_secs == 0 || self.queue.rabbitmq_operation_timeout_ms == 0
        {
            return Err(ConfigError::Rule(
                "queue.rabbitmq_heartbeat_secs and queue.rabbitmq_operation_timeout_ms must be at least 1 (a silent network would otherwise stall workers for good)"
                    .to_owned(),
            ));
        }
        self.cache.validate().map_err(ConfigError::Rule)?;
        if self.server.body_limit_bytes == 0 {
            return Err(ConfigError::Rule(
                "server.body_limit_bytes must be at least 1".to_owned(),
            ));
        }
        if self.server.header_read_timeout_ms == 0 || self.server.keepalive_timeout_ms == 0 {
            return Err(ConfigError::Rule(
                "server.header_read_timeout_ms and server.keepalive_timeout_ms must be at least 1"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets redacted: what `loadstar config` prints.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|error| ConfigError::Rule(error.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use super::*;

    #[test]
    fn defaults_run_the_embedded_mode_without_a_file() {
        let config = Config::default();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert!(config.database.url.is_empty());
        assert_eq!(config.server.body_limit_bytes, 1024 * 1024);
    }

    #[test]
    fn printed_config_masks_database_passwords() {
        let mut config = Config::default();
        config.database.url = "postgres://app:topsecret@db:5432/shop".to_owned();
        let printed = config.to_redacted_toml().unwrap();
        assert!(!printed.contains("topsecret"), "{printed}");
        assert!(
            printed.contains("postgres://app:***@db:5432/shop"),
            "{printed}"
        );
        assert!(printed.contains("[server]"), "{printed}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            )?;
            let error = Config::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(error.to_string().contains("lisen"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[database]\nmax_connections = 3\n")?;
            jail.set_env("LOADSTAR_DATABASE__MAX_CONNECTIONS", "7");
            jail.set_env("LOADSTAR_TEST_DATABASE_URL", "postgres://ignored");
            let config = Config::load(Some(Path::new("a.toml"))).unwrap();
            assert_eq!(config.database.max_connections, 7);
            Ok(())
        });
    }

    #[test]
    fn redis_urls_come_comma_separated_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "LOADSTAR_CACHE__REDIS_URLS",
                "redis://a:6379, redis://b:6379",
            );
            let config = Config::load(None).unwrap();
            assert_eq!(
                config.cache.redis_urls,
                ["redis://a:6379", "redis://b:6379"]
            );
            Ok(())
        });
    }

    #[test]
    fn one_field_of_an_entity_can_be_set_alone() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LOADSTAR_CACHE__PRODUCT__STRATEGY", "off");
            let config = Config::load(None).unwrap();
            assert_eq!(config.cache.product.strategy, CacheStrategy::Off);
            assert_eq!(
                config.cache.product.ttl_secs, 300,
                "the rest keeps its default"
            );
            Ok(())
        });
    }

    #[test]
    fn redis_urls_are_a_list_in_toml_and_strategies_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "[cache]\nredis_urls = [\"redis://a\"]\n[cache.product]\nstrategy = \"write_back\"\nttl_secs = 1\n",
            )?;
            let error = Config::load(Some(Path::new("c.toml"))).unwrap_err();
            assert!(
                error.to_string().contains("cache.product.strategy"),
                "{error}"
            );
            Ok(())
        });
    }
}
