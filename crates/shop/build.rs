//! Compiles the message schemas in `proto/` to Rust at build time.
//!
//! protox parses and checks the `.proto` files in Rust and hands prost-build a
//! `FileDescriptorSet`, so the build needs no `protoc` on the machine (`PROTOC` is never
//! read) and no network.

use std::error::Error;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["loadstar/shop/v1/messages.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    // Source info carries the .proto comments into the generated Rust as doc comments.
    compiler.include_source_info(true);
    for file in PROTO_FILES {
        compiler.open_file(file)?;
    }
    prost_build::Config::new().compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
