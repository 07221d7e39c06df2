//! Unit tests of the event writer and reader.

use super::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "deepgen-tb-{name}-{}-{n}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn summary_value(event: &Event) -> (&str, &summary::value::Value) {
    let Some(event::What::Summary(s)) = &event.what else {
        panic!("not a summary: {event:?}");
    };
    assert_eq!(s.value.len(), 1);
    (&s.value[0].tag, s.value[0].value.as_ref().unwrap())
}

/// Byte offset where the last record of `bytes` starts.
fn last_record_start(bytes: &[u8]) -> usize {
    let (mut pos, mut start) = (0, 0);
    while pos < bytes.len() {
        start = pos;
        pos += 16 + u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
    }
    assert_eq!(pos, bytes.len());
    start
}

fn assert_corrupt(result: Result<Vec<Event>>, file: &Path, what: &str) {
    match result {
        Err(Error::Corrupt { path, reason }) => {
            assert_eq!(path, file, "{what}");
            assert!(reason.starts_with("record "), "{what}: {reason}");
        }
        Err(e) => panic!("{what}: expected Corrupt, got {e}"),
        Ok(events) => panic!("{what}: read {} events from a damaged file", events.len()),
    }
}

#[test]
fn scalars_images_histograms_read_back_exactly() {
    let dir = TempDir::new("roundtrip");
    let mut w = EventWriter::create(&dir.0.join("run")).unwrap();
    let name = w.path().file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert!(
        name.contains(&format!(".{}.", std::process::id())),
        "{name}"
    );
    for step in 0..3u64 {
        w.add_scalar("loss/train", 1.0 / (step + 1) as f64, step * 10)
            .unwrap();
        w.add_scalar("lr", 0.1 * step as f64, step * 10).unwrap();
    }
    let pixels: Vec<u8> = (0..2 * 3 * 3).map(|i| (i * 13) as u8).collect();
    w.add_image("samples", 3, 2, 3, &pixels, 20).unwrap();
    w.add_histogram("weights", &[-2.5, 0.0, 1.0, 1.0, 3e5], 20)
        .unwrap();
    w.flush().unwrap();

    let events = read_events(w.path()).unwrap();
    assert_eq!(events.len(), 1 + 6 + 2);
    assert_eq!(
        events[0].what,
        Some(event::What::FileVersion(FILE_VERSION.into()))
    );
    assert!(
        events.iter().all(|e| e.wall_time > 1.6e9),
        "wall_time in seconds"
    );

    let expected: Vec<(String, u64, f64)> = (0..3u64)
        .flat_map(|s| {
            [
                (
                    "loss/train".to_string(),
                    s * 10,
                    (1.0 / (s + 1) as f64) as f32 as f64,
                ),
                ("lr".to_string(), s * 10, (0.1 * s as f64) as f32 as f64),
            ]
        })
        .collect();
    assert_eq!(read_scalars(w.path()).unwrap(), expected);

    let (tag, summary::value::Value::Image(img)) = summary_value(&events[7]) else {
        panic!("not an image: {:?}", events[7]);
    };
    assert_eq!((tag, events[7].step), ("samples", 20));
    assert_eq!((img.width, img.height, img.colorspace), (3, 2, 3));
    let decoder = png::Decoder::new(std::io::Cursor::new(&img.encoded_image_string));
    let mut reader = decoder.read_info().unwrap();
    let mut decoded = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut decoded).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (3, 2, png::ColorType::Rgb)
    );
    assert_eq!(&decoded[..info.buffer_size()], &pixels[..]);

    let (tag, summary::value::Value::Histo(h)) = summary_value(&events[8]) else {
        panic!("not a histogram: {:?}", events[8]);
    };
    assert_eq!((tag, events[8].step), ("weights", 20));
    assert_eq!((h.min, h.max, h.num, h.sum), (-2.5, 3e5, 5.0, 3e5 - 0.5));
    assert_eq!(h.sum_squares, 6.25 + 2.0 + 9e10);
    assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
}

#[test]
fn masked_crc_matches_known_vectors() {
    // CRC-32C check value, and its mask as TensorBoard's own Python
    // reader computes it (`masked_crc32c(b"123456789")`).
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    // The first record's framing: length, masked CRC of the length bytes.
    let dir = TempDir::new("crc");
    let w = EventWriter::create(&dir.0).unwrap();
    let bytes = fs::read(w.path()).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 16 + len, "file_version record only");
    assert_eq!(bytes[8..12], masked_crc(&bytes[..8]).to_le_bytes());
    assert_eq!(
        bytes[12 + len..],
        masked_crc(&bytes[12..12 + len]).to_le_bytes()
    );
}

#[test]
fn wire_bytes_use_tensorflow_field_numbers() {
    let f64b = |x: f64| x.to_le_bytes().to_vec();
    // wall_time = 1 (fixed64), step = 2 (varint), file_version = 3.
    let e = Event {
        wall_time: 1.0,
        step: 3,
        what: Some(event::What::FileVersion("v".into())),
    };
    assert_eq!(
        e.encode_to_vec(),
        [&[0x09][..], &f64b(1.0), &[0x10, 3, 0x1a, 1, b'v']].concat()
    );
    // session_log = 7 > status = 1.
    let log = SessionLog {
        status: SessionStatus::Start as i32,
        ..Default::default()
    };
    let e = Event {
        what: Some(event::What::SessionLog(log)),
        ..Default::default()
    };
    assert_eq!(e.encode_to_vec(), [0x3a, 2, 0x08, 1]);
    // summary = 5 > value = 1 > tag = 1 and the value kind.
    let event = |value| {
        let v = summary::Value {
            tag: "t".into(),
            metadata: None,
            value: Some(value),
        };
        let what = event::What::Summary(Summary { value: vec![v] });
        Event {
            what: Some(what),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let framed = |kind: &[u8]| {
        let value = [&[0x0a, 1, b't'][..], kind].concat();
        [
            &[0x2a, value.len() as u8 + 2, 0x0a, value.len() as u8][..],
            &value,
        ]
        .concat()
    };
    // simple_value = 2 (fixed32).
    let scalar = [&[0x15][..], &0.5f32.to_le_bytes()].concat();
    assert_eq!(
        event(summary::value::Value::SimpleValue(0.5)),
        framed(&scalar)
    );
    // image = 4 > height = 1, width = 2, colorspace = 3, encoded_image_string = 4.
    let image = summary::Image {
        height: 2,
        width: 3,
        colorspace: 1,
        encoded_image_string: vec![0xab],
    };
    let expected = framed(&[0x22, 9, 0x08, 2, 0x10, 3, 0x18, 1, 0x22, 1, 0xab]);
    assert_eq!(event(summary::value::Value::Image(image)), expected);
    // histo = 5 > min = 1, max = 2, num = 3, sum = 4, sum_squares = 5, bucket = 7 (packed).
    let h = HistogramProto {
        min: 1.0,
        max: 2.0,
        num: 3.0,
        sum: 4.0,
        sum_squares: 5.0,
        bucket_limit: vec![],
        bucket: vec![6.0],
    };
    let mut hb = vec![0x2a, 55];
    for (key, x) in [
        (0x09, 1.0),
        (0x11, 2.0),
        (0x19, 3.0),
        (0x21, 4.0),
        (0x29, 5.0),
    ] {
        hb.push(key);
        hb.extend(f64b(x));
    }
    hb.extend([0x3a, 8]);
    hb.extend(f64b(6.0));
    assert_eq!(event(summary::value::Value::Histo(h)), framed(&hb));
}

#[test]
fn histogram_uses_tensorflow_default_buckets() {
    let limits = default_limits();
    assert_eq!(limits.len(), 1551);
    assert!(limits.windows(2).all(|p| p[0] < p[1]));
    assert_eq!(
        (limits[0], limits[775], limits[776]),
        (-f64::MAX, 0.0, 1e-12)
    );
    let values = [0.0, 1.0, 1.0, -2.5, 3e5, 7e-13, f64::NAN, f64::INFINITY];
    let h = histogram(&values);
    assert_eq!(
        (h.num, h.min, h.max),
        (6.0, -2.5, 3e5),
        "non-finite skipped"
    );
    assert_eq!(h.bucket_limit.len(), h.bucket.len());
    assert!(h.bucket_limit.windows(2).all(|p| p[0] < p[1]));
    assert_eq!(h.bucket.iter().sum::<f64>(), 6.0);
    assert!(
        h.bucket[0] > 0.0 && *h.bucket.last().unwrap() > 0.0,
        "trimmed"
    );
    // Every finite value lies in its bucket [previous limit, limit).
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = h.bucket_limit.partition_point(|&l| l <= v);
        assert!(h.bucket[i] > 0.0, "{v} in an empty bucket");
        let i = limits.partition_point(|&l| l <= v);
        assert!(limits[i - 1] <= v && v < limits[i]);
        assert!(
            h.bucket_limit.contains(&limits[i]),
            "{v}: its own bucket is kept"
        );
    }
    // 0 and 7e-13 share the bucket [0, 1e-12); 1.0 twice.
    let at = |l: f64| h.bucket[h.bucket_limit.iter().position(|&x| x == l).unwrap()];
    assert_eq!(at(1e-12), 2.0);
    // Empty runs between values are merged: a few buckets, not ~800.
    assert!(h.bucket.len() < 20, "{}", h.bucket.len());
    for empty in [&[][..], &[f64::NAN][..]] {
        let h = histogram(empty);
        assert_eq!((h.num, h.min, h.max), (0.0, 0.0, 0.0));
        assert_eq!((h.bucket_limit, h.bucket), (vec![0.0], vec![0.0]));
    }
    // bucket_limit is packed: field 6, wire type 2, byte length, doubles.
    let bytes = HistogramProto {
        bucket_limit: vec![1.0, 2.0],
        ..Default::default()
    }
    .encode_to_vec();
    let mut expected = vec![0x32, 16];
    expected.extend(1.0f64.to_le_bytes());
    expected.extend(2.0f64.to_le_bytes());
    assert_eq!(bytes, expected);
}

#[test]
fn file_cut_inside_its_last_record_is_an_error() {
    let dir = TempDir::new("truncate");
    let mut w = EventWriter::create(&dir.0).unwrap();
    w.add_scalar("a", 1.5, 1).unwrap();
    w.add_histogram("h", &[1.0, 2.0, 3.0], 2).unwrap();
    drop(w);
    let file = fs::read_dir(&dir.0)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = fs::read(&file).unwrap();
    assert_eq!(read_events(&file).unwrap().len(), 3, "flushed on drop");
    let start = last_record_start(&bytes);
    let cut = dir.0.join("cut");
    for len in start + 1..bytes.len() {
        fs::write(&cut, &bytes[..len]).unwrap();
        assert_corrupt(read_events(&cut), &cut, &format!("cut at {len}"));
        assert!(read_scalars(&cut).is_err());
    }
    // Cut exactly between records: a valid, shorter file.
    fs::write(&cut, &bytes[..start]).unwrap();
    assert_eq!(read_events(&cut).unwrap().len(), 2);
}

#[test]
fn any_changed_byte_is_an_error() {
    let dir = TempDir::new("flip");
    let mut w = EventWriter::create(&dir.0).unwrap();
    w.add_scalar("x", -3.25, 7).unwrap();
    w.restart_at(5).unwrap();
    w.flush().unwrap();
    let bytes = fs::read(w.path()).unwrap();
    assert_eq!(
        read_scalars(w.path()).unwrap(),
        vec![("x".into(), 7, -3.25)]
    );
    let bad = dir.0.join("bad");
    for offset in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[offset] ^= flip;
            fs::write(&bad, &damaged).unwrap();
            assert_corrupt(
                read_events(&bad),
                &bad,
                &format!("byte {offset} ^ {flip:#x}"),
            );
        }
    }
}

#[test]
fn restart_at_writes_session_log_start() {
    let dir = TempDir::new("restart");
    let mut w = EventWriter::create(&dir.0).unwrap();
    w.restart_at(42).unwrap();
    w.flush().unwrap();
    let events = read_events(w.path()).unwrap();
    let Some(event::What::SessionLog(log)) = &events[1].what else {
        panic!("{:?}", events[1]);
    };
    assert_eq!((events[1].step, log.status()), (42, SessionStatus::Start));
}

#[test]
fn bad_arguments_are_rejected_and_names_are_unique() {
    let dir = TempDir::new("invalid");
    let mut w = EventWriter::create(&dir.0).unwrap();
    let other = EventWriter::create(&dir.0).unwrap();
    assert_ne!(w.path(), other.path());
    let bad = [
        w.add_image("i", 2, 2, 3, &[0; 11], 0),
        w.add_image("i", 2, 2, 5, &[0; 20], 0),
        w.add_image("i", 0, 2, 1, &[], 0),
        w.add_image("i", usize::MAX, 2, 1, &[], 0),
        w.add_scalar("", 1.0, 0),
        w.add_scalar("s", 1.0, u64::MAX),
    ];
    for r in bad {
        assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
    }
    w.add_image("gray", 2, 1, 1, &[0, 255], 0).unwrap();
    w.flush().unwrap();
    assert_eq!(
        read_events(w.path()).unwrap().len(),
        2,
        "nothing written for errors"
    );
    let missing = dir.0.join("missing");
    assert!(matches!(read_events(&missing), Err(Error::Io { path, .. }) if path == missing));
}
