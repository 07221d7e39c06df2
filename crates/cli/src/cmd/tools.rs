//! The VAE's tools: `deepgen reconstruct`, `encode` and `interpolate`
//! (the last two also for text models' latent spaces).

use std::path::{Path, PathBuf};

use deepgen_cli::{Error, Result};
use deepgen_data::text::{Vocab, UNK};
use deepgen_data::{DataLoader, LoaderConfig, Scale};
use deepgen_text::model::TextModel;
use deepgen_vae::{generate, Vae};
use serde::Serialize;

use super::args::DataArgs;
use super::sample::{check_finite, Loaded};

/// A VAE from its checkpoint, with its data (as recorded unless flags say otherwise).
fn model_and_data(data: &DataArgs, checkpoint: &Path) -> Result<(Vae, DataArgs)> {
    let model = Vae::from_checkpoint(checkpoint)?;
    check_finite(&model, checkpoint)?;
    Ok((model, data.for_checkpoint(checkpoint)?))
}

/// What `encode` and `interpolate` take: a VAE of images, or a text
/// model with a latent space.
enum Latent {
    Images(Vae),
    Text(TextModel, Vocab),
}

/// The model in `path`, read once.
fn latent_model(path: &Path) -> Result<Latent> {
    Ok(match Loaded::read(path)?.0 {
        Loaded::Text(TextModel::Lm(_), _) => {
            return Err(Error::Usage(format!(
                "{}: a language model has no latent space; give a sentence VAE or an ARAE",
                path.display()
            )))
        }
        Loaded::Text(m, v) => Latent::Text(m, v),
        Loaded::Vae(m) => Latent::Images(m),
        // Not a VAE: its loader says why.
        _ => Latent::Images(Vae::from_checkpoint(path)?),
    })
}

/// Held-out images beside their reconstructions (rows of 8 above 8).
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReconstructArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A VAE's model.safetensors
    #[arg(long)]
    checkpoint: PathBuf,
    /// Images to reconstruct
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    n: u64,
    /// The output PNG (its folder is created)
    #[arg(long, default_value = "reconstructions.png")]
    out: PathBuf,
}

pub fn reconstruct(a: ReconstructArgs) -> Result<()> {
    let (model, data) = model_and_data(&a.data, &a.checkpoint)?;
    let target = data.evaluation_set()?;
    let loader = DataLoader::new(
        target.clone(),
        LoaderConfig {
            shuffle: false,
            ..Default::default()
        },
    )?;
    let x = loader
        .batch((0..(a.n as usize).min(target.len())).collect())?
        .images;
    let grid = generate::reconstruction_grid(&model, &x)?;
    generate::write_images(&a.out, &grid, 8)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// Latent means and log-variances of a whole data set, as safetensors and
/// CSV, with a scatter plot of the latent space coloured by label.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EncodeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A VAE's model.safetensors (or a text model's: a sentence VAE, an ARAE)
    #[arg(long)]
    checkpoint: PathBuf,
    /// A text model: a UTF-8 file of sentences to encode, one per line
    #[arg(long)]
    lines: Option<PathBuf>,
    /// Folder for latents.safetensors, latents.csv and latents.png
    #[arg(long, default_value = "runs/encode")]
    out: PathBuf,
}

pub fn encode(a: EncodeArgs) -> Result<()> {
    let model = match latent_model(&a.checkpoint)? {
        Latent::Text(model, vocab) => return encode_text(&a, &model, &vocab),
        Latent::Images(model) => model,
    };
    let data = a.data.for_checkpoint(&a.checkpoint)?;
    let (train, held) = data.split()?;
    let target = match (&data.train_range, &data.held_out, held) {
        (None, Some(_), Some(h)) => h,
        _ => train,
    };
    let (mu, logvar) = generate::encode_all(&model, target.clone())?;
    let labels: Vec<usize> = (0..target.len())
        .map(|i| target.label(i).unwrap_or(0))
        .collect();
    generate::write_latents(&a.out, &mu, &logvar, &labels)?;
    let how = if model.latent_dim() == 2 {
        "the 2-D latent"
    } else {
        "the first two principal components"
    };
    println!(
        "encoded {} images into {}; latents.png shows {how}",
        labels.len(),
        a.out.display()
    );
    Ok(())
}

/// Decodes a straight line in latent space between two held-out images.
#[derive(clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InterpolateArgs {
    #[command(flatten)]
    #[serde(flatten)]
    data: DataArgs,
    /// A VAE's model.safetensors (or a text model's: a sentence VAE, an ARAE)
    #[arg(long)]
    checkpoint: PathBuf,
    /// A text model: the first sentence (the line starts from its latent point)
    #[arg(long, requires = "to_text")]
    from_text: Option<String>,
    /// A text model: the last sentence
    #[arg(long, requires = "from_text")]
    to_text: Option<String>,
    /// Index (within the held-out images) of the first image
    #[arg(long, default_value_t = 0)]
    from: usize,
    /// Index of the second image
    #[arg(long, default_value_t = 1)]
    to: usize,
    /// Images along the line, ends included
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=1000))]
    steps: u64,
    /// The output PNG (its folder is created)
    #[arg(long, default_value = "interpolation.png")]
    out: PathBuf,
}

pub fn interpolate(a: InterpolateArgs) -> Result<()> {
    let model = match latent_model(&a.checkpoint)? {
        Latent::Text(model, vocab) => return interpolate_text(&a, &model, &vocab),
        Latent::Images(model) => model,
    };
    let data = a.data.for_checkpoint(&a.checkpoint)?;
    let target = data.evaluation_set()?;
    for i in [a.from, a.to] {
        if i >= target.len() {
            return Err(Error::Usage(format!(
                "image {i} is beyond the {} images at hand",
                target.len()
            )));
        }
    }
    let (x, _) = target.get(a.from, Scale::ZeroOne)?;
    let (y, _) = target.get(a.to, Scale::ZeroOne)?;
    let steps = a.steps as usize;
    let images = generate::interpolate(&model, &x, &y, steps)?;
    generate::write_images(&a.out, &images, steps)?;
    println!("wrote {}", a.out.display());
    Ok(())
}

/// Token ids of a sentence, which must have some and be all known.
fn sentence_ids(vocab: &Vocab, text: &str, flag: &str) -> Result<Vec<usize>> {
    let ids = vocab.encode(text);
    if ids.is_empty() {
        return Err(Error::Usage(format!("{flag}: the sentence has no tokens")));
    }
    let unknown = ids.iter().filter(|&&i| i == UNK).count();
    if unknown > 0 {
        eprintln!("{flag}: {unknown} tokens are not in the vocabulary and read as <unk>");
    }
    Ok(ids)
}

/// The homotopy of Bowman et al.: greedy decodings of points on the line
/// between two sentences' latent points (posterior means; ARAE codes).
fn interpolate_text(a: &InterpolateArgs, model: &TextModel, vocab: &Vocab) -> Result<()> {
    let (Some(from), Some(to)) = (&a.from_text, &a.to_text) else {
        return Err(Error::Usage(
            "a text model interpolates between --from-text and --to-text".into(),
        ));
    };
    let ends = vec![
        sentence_ids(vocab, from, "--from-text")?,
        sentence_ids(vocab, to, "--to-text")?,
    ];
    let points = model.encode(&ends)?.expect("a model with a latent space");
    let (p, d) = (points.to_vec(), points.shape()[1]);
    let steps = a.steps as usize;
    let p = &p;
    let line: Vec<f32> = (0..steps)
        .flat_map(|i| {
            let t = i as f32 / (steps - 1) as f32;
            (0..d).map(move |j| (1.0 - t) * p[j] + t * p[d + j])
        })
        .collect();
    let line = deepgen_autograd::Tensor::from_vec(line, &[steps, d])?;
    let longest = ends.iter().map(Vec::len).max().unwrap_or(1);
    let decoded = model
        .decode(&line, 2 * longest + 8, 0.0, 0)?
        .expect("a model with a latent space");
    for s in decoded {
        println!("{}", vocab.decode(&s));
    }
    Ok(())
}

/// Latent points of the lines of `--lines` (posterior means, or ARAE
/// codes with zero log-variances), in the order of the file.
fn encode_text(a: &EncodeArgs, model: &TextModel, vocab: &Vocab) -> Result<()> {
    let Some(path) = &a.lines else {
        return Err(Error::Usage(
            "a text model encodes the sentences of --lines FILE".into(),
        ));
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let l = deepgen_data::text::lines(path, &bytes, vocab.level, usize::MAX)?;
    if l.lines.is_empty() {
        return Err(Error::Usage(format!("{}: no sentences", path.display())));
    }
    let ids: Vec<Vec<usize>> = l.lines.iter().map(|s| vocab.encode(s)).collect();
    let mut points = Vec::new();
    for chunk in ids.chunks(256) {
        points.extend(
            model
                .encode(chunk)?
                .expect("a model with a latent space")
                .to_vec(),
        );
    }
    let d = points.len() / ids.len();
    let mu = deepgen_autograd::Tensor::from_vec(points, &[ids.len(), d])?;
    let logvar = match model {
        TextModel::Vae(m) => {
            let mut lv = Vec::new();
            for chunk in ids.chunks(256) {
                let refs: Vec<&[usize]> = chunk.iter().map(Vec::as_slice).collect();
                let b = deepgen_data::text::batch(&refs);
                let (_, logvar) = deepgen_autograd::no_grad(|| m.encode(&b))?;
                lv.extend(logvar.value().to_vec());
            }
            deepgen_autograd::Tensor::from_vec(lv, &[ids.len(), d])?
        }
        _ => deepgen_autograd::Tensor::zeros(&[ids.len(), d]),
    };
    generate::write_latents(&a.out, &mu, &logvar, &vec![0; ids.len()])?;
    println!(
        "encoded {} sentences of {} into {} (rows in the file's order, {} empty lines skipped); \
         latents.png shows {}",
        ids.len(),
        path.display(),
        a.out.display(),
        l.empty,
        if d == 2 {
            "the 2-D latent"
        } else {
            "the first two principal components"
        }
    );
    Ok(())
}
