//! The test harness: `spawn_app`, typed shortcuts for common calls, and the macro that
//! runs one test body on every database backend.

use loadstar::Application;
use loadstar_core::config::{Config, LogFormat};
use loadstar_shop::auth::Role;
use loadstar_shop::users::SignUp;
use loadstar_shop::ShopState;
use loadstar_store::Database;
use rand::Rng;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// Jobs on the RabbitMQ broker of `LOADSTAR_TEST_RABBITMQ_URL`, their ledger on
    /// PostgreSQL when configured, else SQLite.
    RabbitMq,
}

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub database: Database,
    /// The node's shop state (its caches, job queue, sessions).
    pub state: ShopState,
    pub backend: Backend,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<anyhow::Result<()>>,
    data_dir: PathBuf,
}

/// Runs each named `async fn(TestApp)` as `sqlite::<name>` and `postgres::<name>`.
/// The PostgreSQL variant passes trivially (saying so) when no server is configured.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let app = $crate::harness::spawn_app($crate::harness::Backend::Sqlite)
                        .await
                        .expect("sqlite is always available");
                    super::$name(app).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(app) = $crate::harness::spawn_app($crate::harness::Backend::Postgres).await else {
                        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: PostgreSQL variant not run");
                        return;
                    };
                    super::$name(app).await;
                }
            )+
        }
    };
}

/// Runs each named `async fn(Backend)` as `sqlite::<name>`, `postgres::<name>` and
/// `rabbitmq::<name>`: for tests of the job system, whose queue may be any of the three.
/// Each test spawns its own app (e.g. with [`spawn_app_with_workers`]), which passes
/// trivially (saying so) for a backend that is not configured.
#[macro_export]
macro_rules! on_every_queue_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await;
                }
            )+
        }
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::harness::Backend::RabbitMq).await;
                }
            )+
        }
    };
}

fn random_suffix() -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// Configuration for a test app: port 0, a private data dir, cheap password hashing.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut config = Config {
        data_dir,
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace_secs = 10;
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    config.log.format = LogFormat::Text;
    config.log.level = "warn".to_owned();
    // Tests read their own writes from list pages; the TTL-only list cache (stale for
    // its TTL by design) has its own tests.
    config.cache.product_list.strategy = loadstar_core::config::CacheStrategy::Off;
    // Views reach the database quickly, so tests that count them wait little.
    config.cache.product_views.flush_interval_ms = 50;
    // Tests share one Redis; each deployment under test has its own keys.
    config.cache.namespace = format!("test{}", random_suffix());
    config
}

/// Starts the application on `backend` with a fresh, migrated database.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let data_dir = std::env::temp_dir().join(format!("loadstar-test-{}", random_suffix()));
    let mut config = test_config(data_dir.clone());
    if backend == Backend::Postgres {
        config.database.url = loadstar_store::test_support::fresh_postgres_url().await?;
        config.database.max_connections = 8;
    }
    Some(spawn_with_config(config, backend).await)
}

/// Starts the application with exactly `config`.
pub async fn spawn_with_config(config: Config, backend: Backend) -> TestApp {
    let application = Application::build(&config).await.expect("app builds");
    start(application, config, backend)
}

fn start(application: Application, config: Config, backend: Backend) -> TestApp {
    let address = format!("http://{}", application.local_addr().unwrap());
    let database = application.database().clone();
    let state = application.state().clone();
    let shutdown = application.shutdown_token();
    let server = tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        data_dir: config.data_dir.clone(),
        config,
        database,
        state,
        backend,
        shutdown,
        server,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A signed-up user and a session token for them.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json_as(&self, token: &str, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Signs up a customer with a unique email and logs them in.
    pub async fn customer(&self) -> TestUser {
        let email = format!("user-{}@example.com", random_suffix());
        let password = "correct horse battery".to_owned();
        let response = self
            .post_json(
                "/v1/users",
                &json!({"email": email, "password": password, "name": "Test User"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let token = self.login(&email, &password).await;
        TestUser {
            id,
            email,
            password,
            token,
        }
    }

    /// Creates an administrator the way `loadstar admin create` does, and logs them in.
    pub async fn admin(&self) -> TestUser {
        let email = format!("admin-{}@example.com", random_suffix());
        let password = "admin password 1".to_owned();
        let user = loadstar_shop::users::register(
            &self.state,
            SignUp {
                email: email.clone(),
                password: password.clone(),
                name: "Admin".to_owned(),
            },
            Role::Admin,
        )
        .await
        .unwrap();
        let token = self.login(&email, &password).await;
        TestUser {
            id: user.id.to_string(),
            email,
            password,
            token,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .post_json(
                "/v1/sessions",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a product as `admin` and returns its JSON.
    /// Polls the job status at `location` (as `admin`) until `completed`, up to 30 s;
    /// fails at once if the job died.
    pub async fn wait_for_job(&self, admin: &TestUser, location: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status: Value = self
                .get_as(&admin.token, location)
                .await
                .json()
                .await
                .unwrap();
            match status["state"].as_str() {
                Some("completed") => return status,
                Some("dead") => panic!("the job died: {status}"),
                _ => {}
            }
            assert!(
                std::time::Instant::now() < deadline,
                "job still {}",
                status["state"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
        }
    }

    pub async fn product(&self, admin: &TestUser, price_cents: i64, stock: i64) -> Value {
        let sku = format!("sku-{}", random_suffix());
        let response = self
            .post_json_as(
                &admin.token,
                "/v1/products",
                &json!({
                    "sku": sku, "name": format!("Product {sku}"), "description": "for tests",
                    "priceCents": price_cents, "currency": "EUR", "stock": stock
                }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

/// Asserts that `response` is a problem+json with `status`, and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("every response carries x-request-id");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:loadstar:problem:"));
    assert!(body["title"].is_string());
    assert_eq!(body["requestId"], request_id.as_str());
    body
}

/// The field names of a validation problem's `errors`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The `id` of a JSON resource.
pub fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("id is a string").to_owned()
}

/// A response header as text, if present.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Asserts a JSON answer with `status` and returns its body.
pub async fn assert_json(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert_eq!(content_type, "application/json");
    response.json().await.unwrap()
}

/// A payment provider simulator on a free port, stopped when dropped.
pub struct TestPaymentProvider {
    pub url: String,
    shutdown: CancellationToken,
}

impl TestPaymentProvider {
    pub async fn start() -> Self {
        let simulator = loadstar_sim::PaymentSimulator::build(&loadstar_sim::SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..loadstar_sim::SimConfig::default()
        })
        .await
        .unwrap();
        let url = format!("http://{}", simulator.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(simulator.run_until_stopped(shutdown.clone()));
        Self { url, shutdown }
    }

    /// Makes every new charge fail (`1.0`) or succeed (`0.0`).
    pub async fn set_failure_rate(&self, failure_rate: f64) {
        let response = reqwest::Client::new()
            .put(format!("{}/admin/behaviour", self.url))
            .json(&json!({"failureRate": failure_rate, "latencyMs": 0}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn stats(&self) -> Value {
        reqwest::get(format!("{}/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for TestPaymentProvider {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the application with its worker pools, charging through `provider`, with
/// fast retries; `configure` adjusts anything else.
pub async fn spawn_app_with_workers(
    backend: Backend,
    provider: &TestPaymentProvider,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    let data_dir = std::env::temp_dir().join(format!("loadstar-test-{}", random_suffix()));
    let mut config = test_config(data_dir);
    if backend == Backend::Postgres {
        config.database.url = loadstar_store::test_support::fresh_postgres_url().await?;
        config.database.max_connections = 8;
    }
    if backend == Backend::RabbitMq {
        let Ok(broker) = std::env::var("LOADSTAR_TEST_RABBITMQ_URL") else {
            eprintln!("LOADSTAR_TEST_RABBITMQ_URL is not set: RabbitMQ variant not run");
            return None;
        };
        if let Some(url) = loadstar_store::test_support::fresh_postgres_url().await {
            config.database.url = url;
            config.database.max_connections = 8;
        }
        config.queue.backend = Some(loadstar_core::config::QueueBackend::Rabbitmq);
        config.queue.rabbitmq_url = broker;
        config.queue.rabbitmq_prefix = format!("loadstar-test-{}", random_suffix());
        config.queue.rabbitmq_idle_queue_expiry_secs = 60;
    }
    config.payments.url = provider.url.clone();
    config.jobs.poll_interval_ms = 10;
    config.jobs.shutdown_grace_secs = 5;
    for kind in loadstar_shop::messages::ALL_KINDS {
        config.jobs.policies.insert(
            kind.replace('.', "_"),
            loadstar_core::config::JobPolicyConfig {
                max_attempts: 3,
                backoff_base_ms: 1,
                backoff_cap_ms: 10,
                ..Default::default()
            },
        );
    }
    configure(&mut config);
    let application = Application::build(&config)
        .await
        .expect("app builds")
        .with_workers();
    Some(start(application, config, backend))
}

/// An HTTP endpoint on a free port that records every POST (webhooks, alerts).
pub struct TestWebhookReceiver {
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
}

impl TestWebhookReceiver {
    pub async fn start() -> Self {
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&received);
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let sink = std::sync::Arc::clone(&sink);
                async move {
                    sink.lock().unwrap().push((headers, body));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, received }
    }

    /// How many requests arrived so far.
    pub fn len(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The first request, waiting for it up to 30 s.
    pub async fn first(&self) -> (axum::http::HeaderMap, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.len() == 0 {
            assert!(std::time::Instant::now() < deadline, "no webhook arrived");
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, bounded above
        }
        self.received.lock().unwrap()[0].clone()
    }
}

/// The `loadstar-timestamp` a signed webhook carries.
pub fn webhook_timestamp(headers: &axum::http::HeaderMap) -> i64 {
    headers["loadstar-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Starts another api node of the deployment `config` describes (same database, same
/// Redis): with node id `node_id`, which no other running node may have, and a data dir
/// of its own, so each node can be stopped and started again alone.
pub async fn spawn_node(config: &Config, node_id: u16, backend: Backend) -> TestApp {
    let mut config = config.clone();
    config.node.id = Some(node_id);
    config.data_dir = std::env::temp_dir().join(format!("loadstar-test-{}", random_suffix()));
    spawn_with_config(config, backend).await
}

/// The configuration of api nodes sharing one fresh PostgreSQL database and the Redis of
/// `LOADSTAR_TEST_REDIS_URL`, as in production; `None` (saying which `test` is not run)
/// unless both are configured. Start its nodes with [`spawn_node`].
pub async fn stateless_deployment(test: &str) -> Option<Config> {
    let Ok(redis_url) = std::env::var("LOADSTAR_TEST_REDIS_URL") else {
        eprintln!("LOADSTAR_TEST_REDIS_URL is not set: test of {test} not run");
        return None;
    };
    let Some(database_url) = loadstar_store::test_support::fresh_postgres_url().await else {
        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: test of {test} not run");
        return None;
    };
    // `spawn_node` gives every node a data dir of its own.
    let mut config = test_config(PathBuf::new());
    config.database.url = database_url;
    config.database.max_connections = 8;
    config.cache.redis_urls = vec![redis_url];
    // A loaded machine must not turn a slow Redis answer into a bypass or a refused logout.
    config.cache.redis_timeout_ms = 2_000;
    Some(config)
}
