//! Generates the Rust code for `piauth.v1` with a vendored `protoc`, so that
//! building needs no system protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=piauth");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("piauth_descriptor.bin"))
        // These carry secrets; their Debug is written by hand to redact them.
        .skip_debug(["piauth.v1.Token", "piauth.v1.SubmitCodeRequest"])
        .compile_with_config(config, &["piauth/v1/piauth.proto"], &["."])?;
    Ok(())
}
