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
