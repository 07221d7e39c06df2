//! Compiles onnx.proto (argument 1; its folder is the include path) into
//! prost's Rust messages, written to argument 2, without the schema's
//! comments. Run once per ONNX release; the output is committed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, proto, out] = &args[..] else {
        return Err("usage: onnx-schema ONNX_PROTO OUT_DIR".into());
    };
    let dir = std::path::Path::new(proto).parent().ok_or("no folder")?;
    let fds = protox::compile([proto], [dir])?;
    prost_build::Config::new()
        .disable_comments(["."])
        .out_dir(out)
        .compile_fds(fds)?;
    Ok(())
}
