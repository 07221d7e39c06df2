//! What a checkpoint's net is: its architecture and sizes, stored as JSON
//! in the safetensors metadata (key [`SPEC_KEY`]) so `deepgen sample` and
//! `deepgen eval gan` rebuild a generator from its file alone.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use deepgen_nn::checkpoint;
use deepgen_nn::Module;

use crate::{
    DcganConfig, DcganDiscriminator, DcganGenerator, Discriminator, Error, Generator,
    MlpDiscriminator, MlpGanConfig, MlpGenerator, Result,
};

/// Key of the net description in a checkpoint's safetensors metadata.
pub const SPEC_KEY: &str = "deepgen.gan";

/// A generator's or discriminator's architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum NetSpec {
    Mlp(MlpGanConfig),
    Dcgan(DcganConfig),
}

impl NetSpec {
    /// A freshly initialised generator of this architecture.
    pub fn generator(&self, seed: u64) -> Result<Box<dyn Generator>> {
        Ok(match self {
            NetSpec::Mlp(c) => Box::new(MlpGenerator::new(c, seed)?),
            NetSpec::Dcgan(c) => Box::new(DcganGenerator::new(c, seed)?),
        })
    }

    /// A freshly initialised discriminator of this architecture.
    pub fn discriminator(&self, seed: u64) -> Result<Box<dyn Discriminator>> {
        Ok(match self {
            NetSpec::Mlp(c) => Box::new(MlpDiscriminator::new(c, seed)?),
            NetSpec::Dcgan(c) => Box::new(DcganDiscriminator::new(c, seed)?),
        })
    }

    pub fn metadata(&self) -> HashMap<String, String> {
        let json = serde_json::to_string(self).expect("net specs serialise");
        HashMap::from([(SPEC_KEY.to_string(), json)])
    }
}

/// Writes a net's state dict (PyTorch's names) with its spec in the metadata.
pub fn save_net(net: &dyn Module<f32>, spec: &NetSpec, path: &Path) -> Result<()> {
    let state = checkpoint::state_dict(net);
    Ok(checkpoint::save_tensors(
        path,
        &state,
        Some(spec.metadata()),
    )?)
}

/// The generator in a checkpoint written by [`save_net`], or None when the
/// file carries no net spec (a VAE's, say). The file is read once.
pub fn try_load_generator(path: &Path) -> Result<Option<Box<dyn Generator>>> {
    let (tensors, meta) = checkpoint::load_tensors(path)?;
    generator_from_loaded(path, tensors, &meta)
}

/// [`try_load_generator`] on a file already read (`path` names it in
/// errors): the spec in `meta` is checked against what `tensors` hold
/// before the generator is allocated.
pub fn generator_from_loaded(
    path: &Path,
    tensors: Vec<(String, checkpoint::TensorData)>,
    meta: &HashMap<String, String>,
) -> Result<Option<Box<dyn Generator>>> {
    let Some(json) = meta.get(SPEC_KEY) else {
        return Ok(None);
    };
    let spec: NetSpec = serde_json::from_str(json).map_err(|e| Error::Invalid {
        op: "gan checkpoint",
        msg: format!("{}: unreadable net spec: {e}", path.display()),
    })?;
    let g = checkpoint::within_file(path, &tensors, || spec.generator(0))?;
    checkpoint::load_entries(g.as_module(), path, tensors, true)?;
    Ok(Some(g))
}

/// A generator rebuilt from a checkpoint written by the trainer.
pub fn load_generator(path: &Path) -> Result<Box<dyn Generator>> {
    try_load_generator(path)?.ok_or_else(|| Error::Invalid {
        op: "gan checkpoint",
        msg: format!(
            "{}: no deepgen net spec in the file (is it a generator written by `deepgen train gan`?)",
            path.display()
        ),
    })
}
