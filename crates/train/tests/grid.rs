//! PNG grids read back pixel by pixel.

use deepgen_tensor::Tensor;
use deepgen_train::grid::{save_grid, GridOptions};

#[test]
fn a_saved_grid_reads_back_with_the_same_pixels() {
    let dir = std::env::temp_dir().join(format!("deepgen-grid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("grid.png");
    // Two 2x2 RGB images: red and a gradient.
    let data = vec![
        1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.4, 0.6, 0.0, 0.0,
        0.0, 0.0, 1.0, 1.0, 1.0, 1.0,
    ];
    let imgs = Tensor::from_vec(data, &[2, 3, 2, 2]).unwrap();
    save_grid(
        &path,
        &imgs,
        GridOptions {
            nrow: 2,
            padding: 1,
            pad_value: 1.0,
            ..Default::default()
        },
    )
    .unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (7, 4, png::ColorType::Rgb)
    );
    let px = |x: usize, y: usize| &buf[(y * 7 + x) * 3..(y * 7 + x) * 3 + 3];
    assert_eq!(px(0, 0), [255, 255, 255], "padding");
    assert_eq!(px(1, 1), [255, 0, 0], "first image is red");
    assert_eq!(px(4, 1), [0, 0, 255]);
    assert_eq!(px(5, 2), [153, 0, 255], "R plane 0.6 at the last pixel");
}
