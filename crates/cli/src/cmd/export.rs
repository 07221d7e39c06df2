//! `deepgen export`: a trained model as an ONNX file (deepgen-onnx), for
//! ONNX Runtime, TensorRT, OpenVINO and browsers.

use std::collections::HashMap;
use std::path::PathBuf;

use deepgen_cli::{classifier, Error, Result};
use deepgen_gan::Generator;
use deepgen_nn::export::Graph;
use deepgen_nn::Forward;
use deepgen_onnx::{Export, Value};
use deepgen_vae::Vae;

use super::sample::{check_finite, Loaded};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Onnx,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// A VAE's decoder: latent z -> image (the pixel means `sample` draws)
    Decoder,
    /// A VAE's encoder: image -> (mu, logvar) of q(z|x)
    Encoder,
}

#[derive(clap::Args)]
pub struct Args {
    /// A GAN's generator(_ema).safetensors, a VAE's model.safetensors or
    /// a classifier.safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// The file format
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// Which part of a VAE
    #[arg(long, value_enum, default_value = "decoder")]
    part: Part,
    /// The file to write (.onnx)
    #[arg(long, required_unless_present = "web")]
    out: Option<PathBuf>,
    /// Also a static web page in this new folder that draws new images at
    /// the press of a button, with ONNX Runtime Web (a GAN generator or a
    /// VAE decoder); serve the folder over HTTP to open it
    #[arg(long, value_name = "DIR")]
    web: Option<PathBuf>,
    /// onnxruntime-web's dist folder, vendored into the page (`npm pack
    /// onnxruntime-web`, or an `npm install`'s)
    #[arg(
        long,
        value_name = "DIR",
        default_value = "node_modules/onnxruntime-web/dist"
    )]
    ort_web: PathBuf,
}

/// What a model exports to: its graph, inputs, outputs and the names of
/// the graph values that are the outputs.
struct Exported {
    kind: &'static str,
    /// A conditional generator's classes.
    classes: Option<usize>,
    graph: Graph,
    inputs: Vec<Value>,
    results: Vec<String>,
    outputs: Vec<Value>,
}

pub fn run(a: Args) -> Result<()> {
    let Format::Onnx = a.format;
    let (loaded, meta) = Loaded::read(&a.checkpoint)?;
    let e = match loaded {
        Loaded::Generator(g) => generator(g.as_ref())?,
        Loaded::Vae(model) => vae(&model, a.part)?,
        Loaded::Text(model, _) => {
            return Err(Error::Usage(format!(
                "{}: {} has no ONNX export yet (its GRU layers have none; docs/deploy.md)",
                a.checkpoint.display(),
                model.kind()
            )))
        }
        Loaded::Other(tensors) => {
            let model = classifier::from_loaded(&a.checkpoint, tensors)?;
            check_finite(&model, &a.checkpoint)?;
            classifier(&model)?
        }
    };
    if a.part == Part::Encoder && !e.kind.starts_with("vae") {
        return Err(Error::Usage("--part is for VAEs".into()));
    }
    let metadata = description(e.kind, &meta);
    let model = deepgen_onnx::model(&Export {
        name: e.kind,
        graph: &e.graph,
        inputs: &e.inputs,
        results: &e.results,
        outputs: &e.outputs,
        metadata: &metadata,
    });
    if let Some(out) = &a.out {
        deepgen_onnx::write(&model, out)?;
    }
    if let Some(dir) = &a.web {
        web::write(dir, &a.ort_web, &e, &deepgen_onnx::to_bytes(&model))?;
    }
    let written: Vec<String> = a
        .out
        .iter()
        .chain(&a.web)
        .map(|p| p.display().to_string())
        .collect();
    let list = |vs: &[Value]| {
        let v: Vec<String> = vs
            .iter()
            .map(|v| format!("{} {}", v.name, shape(v)))
            .collect();
        v.join(", ")
    };
    println!(
        "wrote {} ({}, ONNX opset {}): {} operators, {} weights; inputs {}; outputs {}",
        written.join(" and "),
        e.kind,
        deepgen_onnx::OPSET,
        e.graph.nodes.len() + e.outputs.len(),
        e.graph.initializers.len(),
        list(&e.inputs),
        list(&e.outputs)
    );
    Ok(())
}

fn shape(v: &Value) -> String {
    let dims = v.sample.iter().flatten().map(|d| d.to_string());
    let all: Vec<String> = std::iter::once(deepgen_onnx::BATCH.to_string())
        .chain(dims)
        .collect();
    format!("[{}]", all.join(", "))
}

/// The model's kind and its own description (the checkpoint's metadata:
/// the architecture's JSON), for the file's metadata.
fn description(kind: &str, meta: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut out = vec![("deepgen.kind".to_string(), kind.to_string())];
    let mut keys: Vec<_> = meta
        .iter()
        .filter(|(k, _)| k.starts_with("deepgen."))
        .collect();
    keys.sort();
    out.extend(keys.into_iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// A generator: z `[latent]` (and an int64 label) -> samples, as its
/// `generate` (a Tanh's images lie in [-1, 1]).
fn generator(g: &dyn Generator) -> Result<Exported> {
    let mut graph = Graph::new();
    let labels = g.num_classes().map(|_| "label");
    let samples = g.export(&mut graph, "z", labels)?;
    let mut inputs = vec![Value::float("z", &[g.latent_dim()])];
    inputs.extend(labels.map(|l| Value::int64(l, &[])));
    Ok(Exported {
        kind: "gan-generator",
        classes: g.num_classes(),
        graph,
        inputs,
        results: vec![samples],
        outputs: vec![Value::float("samples", &g.output_shape())],
    })
}

fn vae(model: &Vae, part: Part) -> Result<Exported> {
    let mut graph = Graph::new();
    let image = model.image_shape();
    let latent = [model.latent_dim()];
    Ok(match part {
        Part::Decoder => Exported {
            kind: "vae-decoder",
            classes: None,
            results: vec![model.export_decoder(&mut graph, "z")?],
            graph,
            inputs: vec![Value::float("z", &latent)],
            outputs: vec![Value::float("image", image)],
        },
        Part::Encoder => {
            let (mu, logvar) = model.export_encoder(&mut graph, "image")?;
            Exported {
                kind: "vae-encoder",
                classes: None,
                graph,
                inputs: vec![Value::float("image", image)],
                results: vec![mu, logvar],
                outputs: vec![Value::float("mu", &latent), Value::float("logvar", &latent)],
            }
        }
    })
}

fn classifier(model: &deepgen_nn::Sequential) -> Result<Exported> {
    let mut graph = Graph::new();
    let logits = model.export(&mut graph, "image")?;
    Ok(Exported {
        kind: "classifier",
        classes: None,
        graph,
        inputs: vec![Value::float("image", &classifier::IMAGE_SHAPE)],
        results: vec![logits],
        outputs: vec![Value::float("logits", &[classifier::CLASSES])],
    })
}

/// The web page of `--web`: index.html, the model and ONNX Runtime Web.
mod web {
    use std::path::Path;

    use deepgen_cli::{Error, Result};
    use serde_json::json;

    use super::Exported;

    const PAGE: &str = include_str!("web/index.html");
    /// What the page loads of onnxruntime-web's dist folder: the script,
    /// its WebAssembly loader and the WebAssembly build.
    const RUNTIME: [&str; 3] = [
        "ort.wasm.min.js",
        "ort-wasm-simd-threaded.mjs",
        "ort-wasm-simd-threaded.wasm",
    ];

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes the page into the new folder `dir`, built beside it and
    /// renamed into place (an interrupted run leaves no half page).
    pub fn write(dir: &Path, ort_web: &Path, e: &Exported, model: &[u8]) -> Result<()> {
        let shape = e.outputs[0].sample.clone().unwrap_or_default();
        let range = match e.kind {
            "gan-generator" => [-1.0, 1.0], // a Tanh's images
            "vae-decoder" => [0.0, 1.0],    // pixel means
            _ => {
                return Err(Error::Usage(format!(
                    "--web draws images of a GAN generator or a VAE decoder, not a {}",
                    e.kind
                )))
            }
        };
        if shape.len() != 3 || ![1, 3].contains(&shape[0]) {
            return Err(Error::Usage(format!(
                "--web draws gray or RGB images; this model makes {shape:?}"
            )));
        }
        if let Some(missing) = RUNTIME.iter().find(|f| !ort_web.join(f).is_file()) {
            return Err(Error::Usage(format!(
                "--ort-web {}: no {missing}; give onnxruntime-web's dist folder \
                 (npm pack onnxruntime-web && tar xzf onnxruntime-web-*.tgz: package/dist)",
                ort_web.display()
            )));
        }
        if dir.exists() {
            return Err(Error::Usage(format!(
                "--web {}: the folder exists",
                dir.display()
            )));
        }
        let about = json!({
            "kind": e.kind,
            "input": e.inputs[0].name,
            "output": e.outputs[0].name,
            "latent": e.inputs[0].sample.as_ref().and_then(|s| s.first()),
            "classes": e.classes,
            "shape": shape,
            "range": range,
        });
        let building = dir.with_extension(format!("partial-{}", std::process::id()));
        std::fs::create_dir_all(&building).map_err(io(&building))?;
        let page = PAGE.replace("/*MODEL*/{}", &about.to_string());
        let put = |name: &str, bytes: &[u8]| {
            std::fs::write(building.join(name), bytes).map_err(io(&building))
        };
        put("index.html", page.as_bytes())?;
        put("model.onnx", model)?;
        for f in RUNTIME {
            let from = ort_web.join(f);
            std::fs::copy(&from, building.join(f)).map_err(io(&from))?;
        }
        std::fs::rename(&building, dir).map_err(io(dir))
    }
}
