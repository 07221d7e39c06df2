//! `deepgen export --web`: the page, served over HTTP and opened in
//! headless Chromium, generates from fixed noise (`?check` reads
//! check.json) with ONNX Runtime Web; its outputs must be deepgen's for
//! the same noise.
//!
//! Needs `chromium` (Debian's package), Python (its http.server) and
//! onnxruntime-web's dist folder in `DEEPGEN_ORT_WEB` (CI: `npm pack
//! onnxruntime-web`); skipped (printing `SKIPPED`) without them, unless
//! `DEEPGEN_REQUIRE_BROWSER=1` (CI). With `DEEPGEN_WEB_SCREENSHOT=FILE`
//! it also saves a screenshot of the page (docs/deploy.md's).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deepgen_autograd::{no_grad, Tensor, Var};
use deepgen_gan::{DcganConfig, NetSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct Cleanup(PathBuf, Option<Child>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.1 {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The browser, onnxruntime-web's files, or None (skipped; a panic when
/// required).
fn tools() -> Option<(String, PathBuf)> {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let ort = std::env::var_os("DEEPGEN_ORT_WEB").map(PathBuf::from);
    let missing = match (&browser, &ort) {
        (None, _) => Some("chromium (apt-get install chromium)"),
        (_, None) => {
            Some("DEEPGEN_ORT_WEB (onnxruntime-web's dist folder: npm pack onnxruntime-web)")
        }
        _ => None,
    };
    if let Some(m) = missing {
        let required = std::env::var("DEEPGEN_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "DEEPGEN_REQUIRE_BROWSER=1 but no {m}");
        println!("SKIPPED: the browser test needs {m}; CI installs it");
        return None;
    }
    Some((browser.unwrap().to_string(), ort.unwrap()))
}

/// `python3 -m http.server` on a free port, serving `dir`, once it answers.
fn serve(dir: &Path) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

fn chromium(browser: &str, args: &[&str]) -> String {
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args([
            "--virtual-time-budget=60000",
            "--run-all-compositor-stages-before-draw",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn the_page_generates_what_deepgen_generates() {
    let Some((browser, ort)) = tools() else {
        return;
    };
    let root = std::env::temp_dir().join(format!("deepgen-web-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let mut guard = Cleanup(root.clone(), None);
    // A conditional DCGAN, its BatchNorm statistics moved off the defaults.
    let spec = NetSpec::Dcgan(DcganConfig {
        latent: 16,
        width: 8,
        num_classes: Some(10),
        embed_dim: 5,
        ..Default::default()
    });
    let g = spec.generator(4).unwrap();
    let rng = &mut ChaCha8Rng::seed_from_u64(1);
    let labels8: Vec<usize> = (0..8).collect();
    g.generate(
        &Var::constant(Tensor::randn(&[8, 16], 0.0, 1.0, rng)),
        Some(&labels8),
    )
    .unwrap();
    let checkpoint = root.join("g.safetensors");
    deepgen_gan::spec::save_net(g.as_module(), &spec, &checkpoint).unwrap();
    let page = root.join("page");
    let o = Command::new(env!("CARGO_BIN_EXE_deepgen"))
        .args(["export", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--web")
        .arg(&page)
        .arg("--ort-web")
        .arg(&ort)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let g = deepgen_gan::spec::try_load_generator(&checkpoint)
        .unwrap()
        .unwrap();
    g.as_module().set_training(false);
    let n = 16;
    let z = Tensor::randn(&[n, 16], 0.0, 1.0, rng);
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let want = no_grad(|| g.generate(&Var::constant(z.clone()), Some(&labels)))
        .unwrap()
        .value()
        .to_vec();
    let check = serde_json::json!({"z": z.to_vec(), "labels": labels, "n": n});
    std::fs::write(page.join("check.json"), check.to_string()).unwrap();

    let (server, port) = serve(&page);
    guard.1 = Some(server);
    let url = format!("http://127.0.0.1:{port}/index.html?check");
    let dom = chromium(&browser, &["--dump-dom", &url]);
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no result in the page: {dom}"));
    let got: Vec<f64> = serde_json::from_str(result).unwrap_or_else(|e| panic!("{e}: {result}"));
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - *b as f64).abs())
        .fold(0.0, f64::max);
    println!(
        "the page's {} values: largest difference from deepgen {worst:.2e}",
        got.len()
    );
    assert!(worst < 1e-5, "largest difference {worst}");
    if let Some(shot) = std::env::var_os("DEEPGEN_WEB_SCREENSHOT") {
        let shot = Path::new(&shot)
            .canonicalize()
            .unwrap_or_else(|_| PathBuf::from(&shot));
        let arg = format!("--screenshot={}", shot.display());
        chromium(&browser, &[&arg, "--window-size=560,520", &url]);
    }
}
