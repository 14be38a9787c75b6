//! `sqlx::migrate!` embeds the migrations at compile time but cannot tell cargo that it
//! read them: without this, a new migration file is silently left out of the binary
//! until something else in the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
