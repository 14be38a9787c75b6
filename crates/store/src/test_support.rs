//! Fresh, migrated databases for tests of any crate (feature `test-support`).
//!
//! SQLite: a new file in a temporary directory. PostgreSQL: a new database on the server
//! that `LOADSTAR_TEST_DATABASE_URL` names (an admin URL); `None` when it is not set, so
//! suites run their PostgreSQL half only where a server is configured.

use crate::{Backend, Database};
use loadstar_core::config::DatabaseConfig;
use sqlx::Connection;
use std::path::{Path, PathBuf};

/// The environment variable naming the PostgreSQL admin URL for tests.
pub const TEST_DATABASE_URL: &str = "LOADSTAR_TEST_DATABASE_URL";

/// A unique scratch directory under the system temp dir (not created).
pub fn scratch_dir(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadstar-{label}-{:016x}", rand::random::<u64>()))
}

/// Creates an empty PostgreSQL database and returns its URL; `None` without a server.
///
/// # Panics
/// If the variable is set but the server refuses: a misconfigured test run must fail
/// loudly, not skip.
#[allow(clippy::expect_used)]
pub async fn fresh_postgres_url() -> Option<String> {
    let admin_url = std::env::var(TEST_DATABASE_URL).ok()?;
    let name = format!("loadstar_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("LOADSTAR_TEST_DATABASE_URL must accept connections");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let mut url = url::Url::parse(&admin_url).expect("LOADSTAR_TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    Some(url.to_string())
}

/// A migrated database on `backend`; `None` for PostgreSQL without a configured server.
#[allow(clippy::expect_used)]
pub async fn fresh_database(backend: Backend) -> Option<Database> {
    let (config, data_dir) = match backend {
        Backend::Sqlite => (DatabaseConfig::default(), scratch_dir("db")),
        Backend::Postgres => (
            DatabaseConfig {
                url: fresh_postgres_url().await?,
                max_connections: 8,
                ..DatabaseConfig::default()
            },
            Path::new("unused").to_owned(),
        ),
    };
    let db = Database::connect(&config, &data_dir)
        .await
        .expect("connect to the test database");
    db.migrate().await.expect("migrate the test database");
    Some(db)
}

/// The identity setup for [`on_every_database!`]: the case takes the database itself.
pub async fn database(db: Database) -> Database {
    db
}

/// Runs each named case on every database engine: as `sqlite::<case>` always, and as
/// `postgres::<case>` on a fresh database when `LOADSTAR_TEST_DATABASE_URL` names a server
/// (the PostgreSQL variant says so and passes when it does not). `setup` is an async fn
/// from a migrated [`Database`] to whatever the cases take; the cases are async fns of it,
/// defined beside the macro call. The one suite-per-trait pattern of every backend crate.
#[macro_export]
macro_rules! on_every_database {
    ($setup:path; $($case:ident),+ $(,)?) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = $crate::test_support::fresh_database($crate::Backend::Sqlite)
                        .await
                        .expect("sqlite is always available");
                    super::$case($setup(db).await).await;
                }
            )+
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = $crate::test_support::fresh_database($crate::Backend::Postgres).await else {
                        eprintln!("LOADSTAR_TEST_DATABASE_URL is not set: PostgreSQL variant not run");
                        return;
                    };
                    super::$case($setup(db).await).await;
                }
            )+
        }
    };
}

/// A small tmpfs mounted for one test, to make the disk under a database fill up for real
/// (`SQLITE_FULL` from the kernel's `ENOSPC`, not a simulated error). Needs root, as CI
/// runs; [`SmallDisk::mount`] returns `None` elsewhere and the caller says so and passes.
/// Unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size_mib` MiB at a fresh directory.
    pub fn mount(size_mib: u32) -> Option<SmallDisk> {
        let path = scratch_dir("small-disk");
        std::fs::create_dir_all(&path).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        Some(SmallDisk { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Takes every free byte with a file, as another program filling the disk would.
    ///
    /// # Panics
    /// If the filler cannot be created.
    #[allow(clippy::expect_used)]
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).expect("create the filler");
        let block = vec![0xA5_u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let small = [0xA5_u8; 512];
        while file.write_all(&small).is_ok() {}
        while file.write_all(&small[..1]).is_ok() {}
        let _ = file.sync_all();
    }

    /// Gives the space back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A PostgreSQL server of the test's own, on a free port, that the test may stop, restart
/// or kill (the machine's shared server is never touched). Its data directory is a fresh
/// `initdb` in a scratch directory; everything is removed when dropped.
///
/// Run as root (CI), the server runs as the `postgres` user, as PostgreSQL requires.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    server: Option<std::process::Child>,
}

impl PrivatePostgres {
    /// Initialises and starts a server; `None` when no PostgreSQL server binaries are
    /// installed (under `/usr/lib/postgresql/*/bin`).
    ///
    /// # Panics
    /// If the binaries exist but the server cannot be set up.
    #[allow(clippy::expect_used)]
    pub fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("postgres").is_file())
            .max()?;
        let dir = scratch_dir("postgres");
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        if as_root() {
            let chown = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(chown.success(), "chown the server's directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = PrivatePostgres {
            bin,
            dir,
            port,
            server: None,
        };
        let initdb = server
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
            .arg(server.data_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run initdb");
        assert!(initdb.success(), "initdb of a private server");
        server.restart();
        Some(server)
    }

    /// The admin URL: user `postgres`, database `postgres`, no password.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command for one of the server's binaries, as `postgres` when we are root.
    fn command(&self, binary: &str) -> std::process::Command {
        let program = self.bin.join(binary);
        if as_root() {
            let mut command = std::process::Command::new("setpriv");
            command
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
            command
        } else {
            std::process::Command::new(program)
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    ///
    /// # Panics
    /// If it does not come up within 30 seconds.
    #[allow(clippy::expect_used)]
    pub fn restart(&mut self) {
        self.stop();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start postgres");
        self.server = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ready = std::process::Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the private PostgreSQL server did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// A fast shutdown, as `pg_ctl stop -m fast`: sessions are terminated ("terminating
    /// connection due to administrator command"), then the server exits; connections are
    /// refused until [`PrivatePostgres::restart`].
    pub fn stop(&mut self) {
        self.signal_and_reap("-INT");
    }

    fn signal_and_reap(&mut self, signal: &str) {
        if let Some(mut child) = self.server.take() {
            let _ = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Immediate shutdown: nothing in this server is worth a checkpoint.
        self.signal_and_reap("-QUIT");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}
