//! Real file formats and every bad-input row of DESIGN.md that data owns.

use std::io::Write;
use std::path::{Path, PathBuf};

use deepgen_data::folder::{self, FolderOptions};
use deepgen_data::{cifar, idx, Dataset, Scale};
use proptest::prelude::*;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deepgen-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn an_mnist_split_loads_from_gzip_or_raw_files() {
    let dir = tmp("mnist");
    let pixels: Vec<u8> = (0..3 * 4).map(|i| i as u8 * 20).collect();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gzip(&idx_bytes(&[3, 2, 2], &pixels)),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[3], &[7, 2, 1]),
    )
    .unwrap();
    let d = idx::load_split(&dir, false).unwrap();
    assert_eq!(
        (d.len(), d.item_shape(), d.label(0)),
        (3, vec![1, 2, 2], Some(7))
    );
    let mut out = vec![0.0; 4];
    d.gather(&[1], Scale::Raw, &mut out).unwrap();
    assert_eq!(out, vec![80.0, 100.0, 120.0, 140.0]);
}

#[test]
fn idx_errors_name_the_file_and_the_problem() {
    let dir = tmp("idx-bad");
    let images = dir.join("images");
    let labels = dir.join("labels");
    std::fs::write(&images, idx_bytes(&[3, 2, 2], &[0; 12])).unwrap();
    std::fs::write(&labels, idx_bytes(&[2], &[1, 2])).unwrap();
    let err = idx::load_pair(&images, &labels).unwrap_err().to_string();
    assert!(
        err.contains("labels") && err.contains("2 labels for 3 images"),
        "{err}"
    );
    std::fs::write(&images, [0u8, 0, 8, 3, 0, 0, 0, 3]).unwrap();
    let err = idx::load_pair(&images, &labels).unwrap_err().to_string();
    assert!(err.contains("images") && err.contains("truncated"), "{err}");
    std::fs::write(&images, [8u8, 0, 8, 3]).unwrap();
    assert!(idx::load_pair(&images, &labels)
        .unwrap_err()
        .to_string()
        .contains("magic"));
    std::fs::write(&images, &gzip(&idx_bytes(&[3, 2, 2], &[0; 12]))[..20]).unwrap();
    assert!(idx::load_pair(&images, &labels)
        .unwrap_err()
        .to_string()
        .contains("gzip"));
    assert!(idx::load_pair(&dir.join("missing"), &labels).is_err());
}

fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
        .save(path)
        .unwrap();
}

#[test]
fn an_image_folder_with_classes_loads_resized_and_cropped() {
    let dir = tmp("folder");
    for (class, colour) in [("a_red", [255, 0, 0]), ("b_blue", [0, 0, 255])] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        write_png(&dir.join(class).join("1.png"), 40, 20, colour);
        write_png(&dir.join(class).join("2.png"), 16, 16, colour);
    }
    let d = folder::load(
        &dir,
        FolderOptions {
            size: 8,
            rgb: true,
            skip_unreadable: false,
        },
    )
    .unwrap();
    assert_eq!(
        (d.len(), d.item_shape(), d.num_classes()),
        (4, vec![3, 8, 8], Some(2))
    );
    assert_eq!(d.label(3), Some(1));
    let mut out = vec![0.0; 3 * 64];
    d.gather(&[0], Scale::ZeroOne, &mut out).unwrap();
    assert!(out[..64].iter().all(|&v| v == 1.0) && out[128..].iter().all(|&v| v == 0.0));
    let gray = folder::load(
        &dir,
        FolderOptions {
            size: 4,
            rgb: false,
            skip_unreadable: false,
        },
    )
    .unwrap();
    assert_eq!(gray.item_shape(), vec![1, 4, 4]);
}

#[test]
fn an_unreadable_image_is_an_error_naming_it_unless_skipping_was_asked() {
    let dir = tmp("folder-bad");
    write_png(&dir.join("good.png"), 8, 8, [1, 2, 3]);
    std::fs::write(dir.join("broken.png"), b"not a png").unwrap();
    let err = folder::load(&dir, FolderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.png"), "{err}");
    let d = folder::load(
        &dir,
        FolderOptions {
            skip_unreadable: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(d.len(), 1);
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        // Set the raw name so that hostile paths ("../x") can be written too.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    gzip(&b.into_inner().unwrap())
}

#[test]
fn cifar_archives_extract_and_load_but_never_escape_the_folder() {
    let dir = tmp("cifar");
    let mut record = vec![4u8];
    record.extend((0..3072).map(|i| (i % 251) as u8));
    let archive = dir.join("c.tar.gz");
    std::fs::write(
        &archive,
        tar_gz(&[("cifar-10-batches-bin/test_batch.bin", &record)]),
    )
    .unwrap();
    let out = dir.join("out");
    cifar::extract(&archive, &out).unwrap();
    let d = cifar::load_split(&out.join("cifar-10-batches-bin"), false).unwrap();
    assert_eq!(
        (d.len(), d.item_shape(), d.label(0)),
        (1, vec![3, 32, 32], Some(4))
    );

    let evil = dir.join("evil.tar.gz");
    std::fs::write(&evil, tar_gz(&[("../escaped.bin", b"x")])).unwrap();
    let jail = dir.join("jail");
    let err = cifar::extract(&evil, &jail).unwrap_err().to_string();
    assert!(err.contains("outside"), "{err}");
    assert!(!dir.join("escaped.bin").exists());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn arbitrary_bytes_never_panic_the_idx_or_cifar_readers(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = idx::parse(Path::new("fuzz"), &bytes);
        let _ = cifar::parse_batch(Path::new("fuzz"), &bytes);
    }

    #[test]
    fn idx_headers_with_random_dims_never_panic(dims in proptest::collection::vec(any::<u32>(), 0..5), body in 0usize..64) {
        let mut bytes = idx_bytes(&dims, &vec![0u8; body]);
        bytes[3] = dims.len() as u8;
        let _ = idx::parse(Path::new("fuzz"), &bytes);
    }
}
