//! Generates the Remote Write message types from `proto/` with prost-build.
//! protox parses the `.proto` files in Rust, so no `protoc` has to be installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/remote_write_v1.proto", "proto/remote_write_v2.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
